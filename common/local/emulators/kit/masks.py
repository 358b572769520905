"""Update masks as Google applies them: a masked field absent from the request is cleared, at any depth."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message


def _holder(message: Message, path: str) -> Message | None:
    """The message that holds ``path``'s last field, when every message on the way to it is set."""
    for name in path.split(".")[:-1]:
        if not message.HasField(name):
            return None
        message = getattr(message, name)
    return message


def _prune(message: Message, path: str) -> None:
    """Clear the messages on ``path`` that the update left empty, deepest first."""
    names = path.split(".")[:-1]
    chain = [message]
    for name in names:
        if not chain[-1].HasField(name):
            break
        chain.append(getattr(chain[-1], name))
    for depth in range(len(chain) - 1, 0, -1):
        if chain[depth].ListFields():
            break
        chain[depth - 1].ClearField(names[depth - 1])


def merge_masked(paths: Sequence[str], source: Message, destination: Message) -> None:
    """Copy the fields at ``paths`` from ``source`` into ``destination``, replacing messages and lists.

    ``FieldMask.MergeMessage`` alone skips a sub-path whose parent message is absent from ``source``, so
    ``update_mask=http_target.uri_override`` with no ``http_target`` in the request (what gcloud's
    ``--clear-http-uri-override`` sends) would keep the old value. Here such a field is cleared, and a message
    left empty by the update is cleared too (gcloud's ``scheduler jobs update http --clear-auth-token`` masks
    both ``oidc_token.*`` and ``oauth_token.*`` leaves and sends neither).
    """
    given = [p for p in paths if _holder(source, p) is not None]
    if given:
        mask = FieldMask(paths=given)
        mask.MergeMessage(source, destination, replace_message_field=True, replace_repeated_field=True)
    for path in paths:
        if path not in given and (holder := _holder(destination, path)) is not None:
            holder.ClearField(path.rsplit(".", 1)[-1])
    for path in paths:
        _prune(destination, path)
