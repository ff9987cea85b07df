"""basketagent: camera -> product detector -> stable events -> durable journal -> basket backend."""

__version__ = "0.1.0"
