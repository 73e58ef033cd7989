-- Delete an experiment: its keys go, its audit stream stays with the entry that says who
-- deleted it and why.
-- Invariant: the deletion and its audit entry happen together; a config that is gone (this
-- very delete arriving again, or another one first: either way it is deleted) or is no
-- longer the version the caller read (a change raced the delete) deletes nothing.
-- KEYS[1] config, KEYS[2] audit stream, KEYS[3..] the experiment's other keys
-- ARGV[1] version the caller read, ARGV[2] audit entries (audit.lua), ARGV[3] audit stream
-- max length
local current = redis.call('GET', KEYS[1])
if not current then return 'gone' end
if tostring(cjson.decode(current)['version']) ~= ARGV[1] then return 'conflict' end
redis.call('DEL', KEYS[1], unpack(KEYS, 3))
append_audit(KEYS[2], ARGV[2], ARGV[3])
return 'ok'
