"""The node's read-only web explorer: server-rendered pages over the node's own HTTP API.

`mount(app, api_url)` adds it to the API's aiohttp application (same port, same bind address).
Templates and static files live beside this module and ship as package data; nothing is fetched
from elsewhere at run time.
"""

from p2p.explorer.pages import Explorer, mount

__all__ = ["Explorer", "mount"]
