"""The local stack's push targets: the status and load functions behind their subscriptions' dead-letter policy.

``tributary dev up`` serves this file (``functions-framework --source``) for the two functions Pub/Sub pushes
to, so a push that keeps failing ends in the dead letters after as many deliveries as on a deployment
(``common.local.deliveries``). The deployed functions are ``functions/status.py`` and ``functions/load.py``.
"""

import functions_framework

from common.gcp import names
from common.local.deliveries import bounded
from functions.load import load as deployed_load
from functions.status import status as deployed_status

status = functions_framework.cloud_event(bounded(deployed_status, names.STATUS_SUBSCRIPTION))
load = functions_framework.cloud_event(bounded(deployed_load, names.LOAD_SUBSCRIPTION))
