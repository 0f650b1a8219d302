"""dshub, cut by concern; imports go one way, down this list (`make lint` holds it):

hubconfig (the hub's configuration) > cli (operators' commands) > hub, spawn, auth,
services > pool > config > core.
"""
