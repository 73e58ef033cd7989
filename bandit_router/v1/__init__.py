"""Generated from proto/bandit_router/v1 by scripts/gen_proto.py; do not edit."""
