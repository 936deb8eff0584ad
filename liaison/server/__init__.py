"""The liaison WebSocket server (asyncio) and its HTTP front."""

from .app import LiaisonServer, ServerThread
from .config import ServerConfig

__all__ = ["LiaisonServer", "ServerConfig", "ServerThread"]
