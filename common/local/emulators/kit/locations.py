"""The ``google.cloud.location.Locations`` mixin both services carry: ListLocations and GetLocation."""

from __future__ import annotations

import re
from collections.abc import Sequence

from google.cloud.location import locations_pb2

from common.local.emulators.kit.rpc import invalid

LOCATIONS_SERVICE = "google.cloud.location.Locations"
#: What ListLocations answers. The emulators accept every location id in a resource name; these are listed
#: so that tools which pick a default region from the list (gcloud without ``--location``) find one.
DEFAULT_LOCATIONS = ("us-central1", "us-east1", "us-west1", "europe-west1", "europe-west3", "asia-northeast1")
REGION_LABEL = "cloud.googleapis.com/region"
_PROJECT = re.compile(r"projects/[A-Za-z0-9\-:.]{1,100}")
_LOCATION = re.compile(r"(projects/[A-Za-z0-9\-:.]{1,100})/locations/([A-Za-z0-9-]{1,63})")


class Locations:
    """ListLocations over ``ids`` and GetLocation of any id, on raw ``locations_pb2`` messages."""

    def __init__(self, ids: Sequence[str] = DEFAULT_LOCATIONS) -> None:
        self.ids = tuple(ids)

    @staticmethod
    def location(project: str, location_id: str) -> locations_pb2.Location:
        return locations_pb2.Location(
            name=f"{project}/locations/{location_id}", location_id=location_id, labels={REGION_LABEL: location_id}
        )

    def list_locations(self, req: locations_pb2.ListLocationsRequest) -> locations_pb2.ListLocationsResponse:
        if not _PROJECT.fullmatch(req.name):
            raise invalid(f"Invalid resource name {req.name!r}: expected projects/PROJECT_ID")
        if req.filter.strip():
            raise invalid(f"Unsupported filter {req.filter!r}: the emulator lists every location")
        if req.page_size < 0:
            raise invalid(f"page_size must not be negative, got {req.page_size}")
        try:
            start = int(req.page_token or 0)
        except ValueError:
            raise invalid("page_token is not a token this emulator issued") from None
        size = req.page_size or len(self.ids)
        page = self.ids[start : start + size]
        resp = locations_pb2.ListLocationsResponse(locations=[self.location(req.name, i) for i in page])
        if start + size < len(self.ids):
            resp.next_page_token = str(start + size)
        return resp

    def get_location(self, req: locations_pb2.GetLocationRequest) -> locations_pb2.Location:
        m = _LOCATION.fullmatch(req.name)
        if not m:
            raise invalid(f"Invalid resource name {req.name!r}: expected projects/PROJECT_ID/locations/LOCATION_ID")
        return self.location(m.group(1), m.group(2))
