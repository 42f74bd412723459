"""Notices the libraries log on every run that a user of motif-video can do nothing about, dropped by exact text
from the logger that logs them: for the span of one of our own calls (`dropped`), or for the whole `motif-video`
command (`cli.quiet_known_notices`). Every other message of those loggers stays."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

# What diffusers' pipeline loader logs on every load of a folder in the released layout, dropped by the pipelines'
# `from_pretrained` while it loads: building the folder's guider component (a diffusers guider, which the pipelines
# use by design), diffusers calls guiders experimental; and without torchvision, transformers says that the SigLIP
# image processor the folder names (`SiglipImageProcessor`, its default, which needs torchvision) falls back to its
# PIL version, which serves the pipelines as well (`training.components.siglip_processor_class` names it directly).
LOADER_NOTICES = {
    "diffusers.guiders.guider_utils": "Guiders are currently an experimental feature",
    "transformers.utils.import_utils": "requires torchvision (not installed); falling back to",
}


class DropNotice(logging.Filter):
    """A logger filter that drops the messages holding `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def dropped(notices: Mapping[str, str]) -> Iterator[None]:
    """`notices` (logger name -> text of the message) dropped while the block runs."""
    added = [(logging.getLogger(name), DropNotice(text)) for name, text in notices.items()]
    for logger, notice in added:
        logger.addFilter(notice)
    try:
        yield
    finally:
        for logger, notice in added:
            logger.removeFilter(notice)
