"""Running and shipping the system: local Redis, the demo, publishing the frontend."""
