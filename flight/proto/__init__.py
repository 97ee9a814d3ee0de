"""Flight SQL wire messages: `flight_sql.proto` and the classes protoc generates from it.

Import the messages through `flight.protocol`; regenerate with `make proto` after editing the
`.proto` file.
"""
