"""moto's server, with DynamoDB's isolation guarantees kept under concurrent requests.

moto serves each request on its own thread, and its DynamoDB backend is not written for
that: a transaction snapshots the whole table and, when a condition fails, puts the
snapshot back, undoing every write other threads made meanwhile; conditional updates check
and write in separate steps. DynamoDB itself applies each write atomically and runs
transactions serializably, and vodpipe's control plane relies on exactly that (the last
commit moving a job to STITCHING, leases, fencing tokens). So every DynamoDB operation
here runs under one lock; the other services are untouched.

Usage: python moto_server.py [moto_server's arguments]
"""

import functools
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_LOCK = threading.RLock()

_OPERATIONS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
    "transact_get_items",
    "batch_write_item",
)


def _serialised(operation):
    @functools.wraps(operation)
    def run(*args, **kwargs):
        with _LOCK:
            return operation(*args, **kwargs)

    return run


for _name in _OPERATIONS:
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _serialised(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    main()
