"""Skylift with an external Mosquitto 2.0 broker instead of the embedded one.

Mosquitto loads Skylift's plugin (`skylift_plugin.c`, built by `skylift mosquitto-plugin`): it asks
Skylift to check each device login (login.py), keeps each device to its own topics, and reports
connections and subscriptions as events. Skylift's link (link.py) takes device messages and those
events from its persistent session and sends notices through the broker (events.py keeps the order).
"""
