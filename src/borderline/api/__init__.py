"""HTTP API (FastAPI): the regions' transparency logs as C2SP tlog-tiles, and their witnesses."""

from borderline.api.app import PublishedLog, create_app, create_witness_app, valid_tile_path
from borderline.api.server import ApiServer, WitnessServer, published_logs

__all__ = [
    "ApiServer",
    "PublishedLog",
    "WitnessServer",
    "create_app",
    "create_witness_app",
    "published_logs",
    "valid_tile_path",
]
