-- Shared by the scripts that change an experiment (create_experiment, update_experiment,
-- update_and_reset, reset_statistics, delete_experiment): the change's audit entries, who
-- did what, when and why, written by the same script as the change itself, so there is no
-- change without its entry (a store failure between two calls, or a process that died
-- there, once left a quarantine or a pin unaudited) and no entry without its change.
-- entries_json: a JSON array of [time, principal, action, arguments JSON, reason] arrays
-- (strings; redis_store.AuditEntry), appended in order to the capped audit stream.

local function append_audit(audit, entries_json, maxlen)
  for _, entry in ipairs(cjson.decode(entries_json)) do
    redis.call('XADD', audit, 'MAXLEN', '~', maxlen, '*', 'time', entry[1],
      'principal', entry[2], 'action', entry[3], 'arguments', entry[4], 'reason', entry[5])
  end
end

