"""Update masks as Google applies them: a masked field absent from the request is cleared, at any depth."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message


def merge_masked(paths: Sequence[str], source: Message, destination: Message) -> None:
    """Copy the fields at ``paths`` from ``source`` into ``destination``, replacing messages and lists.

    ``FieldMask.MergeMessage`` alone skips a sub-path whose parent message is absent from ``source``, so
    ``update_mask=http_target.uri_override`` with no ``http_target`` in the request (what gcloud's
    ``--clear-http-uri-override`` sends) would keep the old value instead of clearing it.
    """
    src = type(source)()
    src.CopyFrom(source)
    for path in paths:
        message = src
        for name in path.split(".")[:-1]:
            message = getattr(message, name)
            message.SetInParent()
    FieldMask(paths=list(paths)).MergeMessage(src, destination, replace_message_field=True, replace_repeated_field=True)
