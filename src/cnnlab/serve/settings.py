"""`cnnlab serve`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.limits import MAX_IMAGE_PIXELS, MAX_UPLOAD_MB
from ..base.settings import option
from ..config.common import ENGINE_HELP, ENGINES, UNKNOWN_HELP


@dataclass(frozen=True)
class ServeSettings:
    host: str = option("127.0.0.1", "address to listen on; 0.0.0.0 opens the server to the network")
    port: int = option(8000, "TCP port", minimum=1, maximum=65535)
    engine: str = option("auto", ENGINE_HELP, choices=ENGINES, kind="engine")
    max_batch: int = option(32, "dynamic batching: at most this many images per forward pass "
                                "(1 turns batching off)", minimum=1)
    max_wait_ms: float = option(5.0, "dynamic batching: how long the first image of a batch waits "
                                     "for others", minimum=0)
    max_queue: int = option(256, "images waiting at most; beyond it requests get 503 with "
                                 "Retry-After", minimum=1)
    max_upload_mb: float = option(MAX_UPLOAD_MB, "largest request body, in MB", minimum=0)
    max_pixels: int = option(MAX_IMAGE_PIXELS, "largest image, in pixels (decompression bombs are "
                                               "refused before decoding)", minimum=1)
    request_timeout: float = option(30.0, "seconds a request may wait for the model (queue and "
                                          "forward pass); past it 504, and /healthz answers 503 "
                                          "while one forward pass runs longer", above=0,
                                    maximum=86400)
    header_timeout: float = option(10.0, "seconds a client has to send a request's headers; a "
                                         "slower one is disconnected", above=0, maximum=3600)
    body_timeout: float = option(60.0, "seconds a client has to send a request's body; a slower "
                                       "one gets 408", above=0, maximum=3600)
    max_header_kb: int = option(64, "largest request line and headers, in kB; larger ones get 431",
                                minimum=1, maximum=1_000_000)
    max_connections: int = option(512, "connections open at once; over it the one waiting longest "
                                       "for a request is closed, or with none waiting the new one "
                                       "gets 503", minimum=1, maximum=1_000_000)
    topk: int = option(5, "classes per prediction unless ?topk= says otherwise", minimum=1)
    unknown: bool = option(True, UNKNOWN_HELP)
    threads: int | None = option(None, "CPU threads for the model (default: one per physical core)",
                                 minimum=1, maximum=1024)
