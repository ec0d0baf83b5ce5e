"""moto's server, with DynamoDB's isolation guarantees kept under concurrent requests.

moto serves each request on its own thread, and its DynamoDB backend is not written for
that: a transaction snapshots the whole table and, when a condition fails, puts the
snapshot back, undoing every write other threads made meanwhile; conditional updates check
and write in separate steps. DynamoDB itself applies each write atomically and runs
transactions serializably, and vodpipe's control plane relies on exactly that (the last
commit moving a job to STITCHING, leases, fencing tokens). So every DynamoDB operation
here runs under one lock; the other services are untouched.

Every AWS request goes through `aws_front.py`, the emulator's front door: IAM checked
against the caller's role, faults injected by a seeded plan, and what moto leaves out of
AWS (idempotent transaction tokens, S3 events with their version and sequencer). And
one of DynamoDB's limits is brought up to date: a transaction holds up to 100 items
(moto still enforces the 25 of before September 2022).

It also counts the requests it serves, by service and operation, with the bytes each
carried: `GET /_vodpipe/requests` returns the counts as JSON, `DELETE` resets them. The
load tests (`make load`, `make load-control`) read their AWS calls per item from there, so
calls made by processes they kill are counted too. `GET /_vodpipe/requests/s3` gives S3's
requests and bytes served by bucket and method (`BUCKET:GET`): what one deployment read,
whatever else runs on the emulator.

Usage: python moto_server.py [moto_server's arguments]
"""

import collections
import copy
import functools
import json
import os
import threading
import time
import urllib.parse

import aws_front
import moto.dynamodb.models as dynamodb_models
import moto.dynamodb.responses as dynamodb_responses
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
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


class _TablesNotCopied:
    """`copy` as moto's transactions see it: a table is not copied (see below); anything
    else is."""

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


_ORIGINAL_TRANSACT = DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    """moto's transaction, rolled back item by item: moto copies every table a transaction
    touches before it starts, which costs time in proportion to the table and makes a load
    test quadratic. Only the items the transaction names can change, so only those are
    kept and put back if it is cancelled."""
    kept = []
    for entry in transact_items:
        op_type, op = next(iter(entry.items()))
        table = self.get_table(op["TableName"])
        if op_type == "Put":
            attrs = op["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
        else:
            key = op["Key"]
        hash_key, range_key = self.get_keys_value(table, key)
        kept.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    dynamodb_models.copy = _TablesNotCopied
    try:
        return _ORIGINAL_TRANSACT(self, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(kept):
            if item is None:
                table.delete_item(hash_key, range_key)
            elif range_key is not None:
                table.items[hash_key][range_key] = item
            else:
                table.items[hash_key] = item
        raise
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = _transact_write_items

for _name in _OPERATIONS:
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _serialised(getattr(DynamoDBBackend, _name)))


def _exit_with_parent():
    """A test starts the emulator and may exit without stopping it: the emulator ends
    when the process that started it does."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


threading.Thread(target=_exit_with_parent, daemon=True).start()

_COUNTS_LOCK = threading.Lock()
_COUNTS: dict = collections.defaultdict(lambda: {"requests": 0, "bytes_in": 0, "bytes_out": 0})
_BUCKET_COUNTS: dict = collections.defaultdict(lambda: {"requests": 0, "bytes_out": 0})


def _service(environ):
    """The signing scope's service (`.../us-east-1/dynamodb/aws4_request`), from the
    Authorization header or a presigned URL's X-Amz-Credential."""
    credential = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in credential:
        credential = credential.split("Credential=", 1)[1].split(",", 1)[0]
    else:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        credential = (query.get("X-Amz-Credential") or [""])[0]
    parts = credential.split("/")
    return parts[3] if len(parts) >= 5 else "unsigned"


def _operation(environ, service):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]
    if service == "s3":
        return environ.get("REQUEST_METHOD", "?")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    return (query.get("Action") or [environ.get("REQUEST_METHOD", "?")])[0]


_ORIGINAL_CALL = DomainDispatcherApplication.__call__


def _bucket(environ):
    """The bucket an S3 request names (path style, or a virtual host's first label)."""
    host = environ.get("HTTP_HOST", "").split(":")[0]
    first = host.split(".")[0]
    if "." in host and not first.isdigit() and first not in ("s3", "localhost"):
        return first
    return environ.get("PATH_INFO", "/").lstrip("/").split("/")[0]


def _counting_call(self, environ, start_response):
    if environ.get("PATH_INFO") == "/_vodpipe/requests/s3":
        # S3 requests and bytes by bucket: what one deployment's reads cost, whatever
        # other tests do on the same emulator.
        with _COUNTS_LOCK:
            body = json.dumps(_BUCKET_COUNTS).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if environ.get("PATH_INFO") == "/_vodpipe/requests":
        with _COUNTS_LOCK:
            if environ.get("REQUEST_METHOD") == "DELETE":
                _COUNTS.clear()
            body = json.dumps(_COUNTS).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    door = aws_front.control(environ, start_response)
    if door is not None:
        return door
    service = _service(environ)
    operation = _operation(environ, service)
    key = f"{service}:{operation}"
    size_in = int(environ.get("CONTENT_LENGTH") or 0)
    chunks = aws_front.handle(
        lambda env, respond: _ORIGINAL_CALL(self, env, respond),
        environ,
        start_response,
        service,
        operation,
    )
    with _COUNTS_LOCK:
        entry = _COUNTS[key]
        entry["requests"] += 1
        entry["bytes_in"] += size_in
        entry["bytes_out"] += sum(len(c) for c in chunks)
        if service == "s3":
            by_bucket = _BUCKET_COUNTS[f"{_bucket(environ)}:{operation}"]
            by_bucket["requests"] += 1
            by_bucket["bytes_out"] += sum(len(c) for c in chunks)
    return chunks


DomainDispatcherApplication.__call__ = _counting_call
aws_front.patch_s3_events()
aws_front.patch_ecs_list_tasks()
# TransactWriteItems' limit today (DynamoDB's quotas page: 100 actions, 4 MB).
dynamodb_responses.TRANSACTION_MAX_ITEMS = 100

if __name__ == "__main__":
    main()
