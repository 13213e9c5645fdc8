"""qtchat: a LAN chat app on Qt. Host a room or join one."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
DEFAULT_PORT = 8800
