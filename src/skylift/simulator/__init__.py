"""Virtual devices for rehearsals, demos and tests: they talk to Skylift over real MQTT and HTTP only.

Nothing here imports the server's code: a simulated device knows Skylift only through the wire protocol
(README's "Device protocol"), as a device in the field does.
"""
