"""HTTP API (FastAPI): the regions' transparency logs as C2SP tlog-tiles, and their witnesses."""

from borderline.api.app import PublishedLog, create_app, valid_tile_path
from borderline.api.server import ApiServer, published_logs
from borderline.api.witness import create_witness_key, load_witness

__all__ = [
    "ApiServer",
    "PublishedLog",
    "create_app",
    "create_witness_key",
    "load_witness",
    "published_logs",
    "valid_tile_path",
]
