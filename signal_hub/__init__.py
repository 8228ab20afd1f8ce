"""The signal hub: REST API, Socket.IO intake, subscriber directory, results relay and the store."""
