"""The emulator's front door: AWS as it fails, and as it checks permissions.

moto answers every request it understands and never fails one, never throttles and, with
the roles vodpipe deploys, cannot check a permission (its authorisation checks DynamoDB,
ECS and EventBridge calls against the resource "*", which no resource-scoped statement
matches, and reads any unmet Condition of an Allow as a Deny). Real AWS loses responses
after applying a write, throttles, reports transaction conflicts and checks every call
against the caller's policies. This module sits between the SDK clients and moto (the WSGI
app of `moto_server.py`) and adds exactly that:

- **IAM.** A request signed with credentials of an assumed role (what every function and
  worker task of the emulated deployment gets: `sts:AssumeRole` on a role holding its
  template statements) is allowed only when that role's policies allow every IAM action
  the request needs, on its resource, with its condition keys, under AWS's evaluation
  rules (an explicit Deny wins, an Allow needs action, resource and conditions to match).
  `TransactWriteItems` is authorised per item (`PutItem`, `UpdateItem`, `DeleteItem`,
  `ConditionCheckItem`), `HeadObject` as `s3:GetObject` (`s3:GetObjectVersion` with a
  version id), `RunTask` on its task definition with `ecs:cluster` and `iam:PassRole` for
  the definition's roles. A GET or HEAD of a missing object answers 403, not 404, to a
  caller without `s3:ListBucket` on the bucket, as S3 does. Refusals answer in the
  service's own error shape and are recorded (`GET /_vodpipe/iam`). Requests signed with
  plain access keys (the test harness, the operator) are not restricted.
- **Faults.** Seeded and reproducible per operation (the n-th call of an operation meets
  the same fate in every run with the same seed), with rates per service and operation:
  a response lost after the request was applied (the client sees a 500 and retries),
  throttling in the service's own error shape without applying, DynamoDB
  `TransactionCanceledException` with a `TransactionConflict` reason, and added latency.
  What was injected is counted by operation and kind (`GET /_vodpipe/faults`).
- **What moto leaves out.** `ClientRequestToken` makes a repeated `TransactWriteItems`
  succeed as the first did (moto applies it again, and its conditions then fail), and
  `clientToken` a repeated ECS `RunTask` (moto would start a second set of tasks); S3
  event notifications carry the object's `versionId` and a `sequencer`, as S3's do; and
  ECS `ListTasks` without a `desiredStatus` lists RUNNING tasks only, as ECS does (moto
  lists stopped tasks too, so a fleet counting its tasks never replaced a stopped one).

Control endpoints (JSON): `POST /_vodpipe/faults` sets the fault plan, `DELETE` clears it
and its counts; `POST /_vodpipe/iam` with `{"enforce": true}` switches enforcement on,
`DELETE` clears the recorded refusals.
"""

import fnmatch
import hashlib
import io
import json
import re
import threading
import time
import urllib.parse

_LOCK = threading.Lock()
_STATE = {
    "faults": None,  # the plan: {"seed", "scope", "rules": [...]}
    "counters": {},  # (service, operation) -> calls seen under the plan
    "injected": {},  # "service:operation" -> {kind: n}
    "rule_hits": {},  # rule index -> injections (for a rule's "limit")
    "enforce": False,
    "denials": [],
    "checked": 0,
    "tokens": {},  # ClientRequestToken -> (expires, status, headers, body)
}

ACCOUNT = "123456789012"
PARTITION = "aws"

# --------------------------------------------------------------------------- requests


class Call:
    """One request as the front door sees it."""

    def __init__(self, environ, service, operation):
        self.environ = environ
        self.service = service
        self.operation = operation
        self.region = "us-east-1"
        self.access_key = ""
        self.token = None
        self.body = None
        self._credential()

    def _credential(self):
        auth = self.environ.get("HTTP_AUTHORIZATION", "")
        query = urllib.parse.parse_qs(self.environ.get("QUERY_STRING", ""))
        if "Credential=" in auth:
            credential = auth.split("Credential=", 1)[1].split(",", 1)[0]
        else:
            credential = (query.get("X-Amz-Credential") or [""])[0]
        parts = credential.split("/")
        if parts and parts[0]:
            self.access_key = parts[0]
        if len(parts) >= 3:
            self.region = parts[2]
        self.token = self.environ.get("HTTP_X_AMZ_SECURITY_TOKEN") or (
            query.get("X-Amz-Security-Token") or [None]
        )[0]

    def json_body(self):
        """The request body as a JSON object (JSON-protocol services), read once and put
        back for moto; `{}` for anything else."""
        if self.body is None:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
            raw = self.environ["wsgi.input"].read(length) if length else b""
            self.environ["wsgi.input"] = io.BytesIO(raw)
            self.body = raw
        try:
            doc = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def form(self):
        """Query-protocol parameters: the query string and a form-encoded body."""
        self.json_body()
        params = self.query()
        params.update(urllib.parse.parse_qs((self.body or b"").decode("utf-8", "replace")))
        return params

    def query(self):
        return urllib.parse.parse_qs(
            self.environ.get("QUERY_STRING", ""), keep_blank_values=True
        )

    def is_json(self):
        """A JSON-protocol call (never S3, whose object bodies may be JSON documents)."""
        return self.service != "s3" and "json" in self.environ.get("CONTENT_TYPE", "")

    def resource_text(self):
        """What a fault rule's `match` looks for: the path and the named resources."""
        text = urllib.parse.unquote(self.environ.get("PATH_INFO", ""))
        if self.is_json():
            body = self.json_body()
            for k in ("TableName", "QueueUrl", "QueueName"):
                if isinstance(body.get(k), str):
                    text += " " + body[k]
            for entry in body.get("TransactItems", []):
                for op in entry.values():
                    text += " " + str(op.get("TableName", ""))
        return text


# --------------------------------------------------------------------------- responses


def _json_error(call, status, code, message, extra=None):
    namespaces = {
        "dynamodb": "com.amazonaws.dynamodb.v20120810#",
        "sqs": "com.amazonaws.sqs#",
    }
    doc = {"__type": namespaces.get(call.service, "") + code, "message": message}
    doc.update(extra or {})
    body = json.dumps(doc).encode()
    ctype = call.environ.get("CONTENT_TYPE") or "application/x-amz-json-1.0"
    headers = [("Content-Type", ctype), ("x-amzn-RequestId", "front-door")]
    if call.service == "sqs":
        # SQS's JSON protocol names the query-compatible code here too.
        headers.append(("x-amzn-query-error", f"{code};Sender"))
    return status, headers, body


def _xml_error(status, code, message, wrap=True):
    inner = f"<Code>{code}</Code><Message>{message}</Message><RequestId>front-door</RequestId>"
    if wrap:
        body = f"<ErrorResponse><Error><Type>Sender</Type>{inner}</Error></ErrorResponse>"
    else:
        body = f"<Error>{inner}</Error>"
    return status, [("Content-Type", "application/xml")], body.encode()


def error_response(call, kind, message):
    """An error in the shape `call`'s service answers with: `throttle`, `internal`,
    `denied`."""
    s3_like = call.service == "s3"
    if kind == "throttle":
        if s3_like:
            return _xml_error(503, "SlowDown", "Please reduce your request rate.", wrap=False)
        if call.service == "dynamodb":
            return _json_error(call, 400, "ProvisionedThroughputExceededException", message)
        if call.service == "sqs" and call.is_json():
            return _json_error(call, 400, "RequestThrottled", message)
        if call.is_json():
            return _json_error(call, 400, "ThrottlingException", message)
        return _xml_error(400, "Throttling", message)
    if kind == "internal":
        if s3_like:
            return _xml_error(500, "InternalError", message, wrap=False)
        if call.is_json():
            return _json_error(call, 500, "InternalServerError", message)
        return _xml_error(500, "InternalFailure", message)
    if kind == "denied":
        if s3_like:
            return _xml_error(403, "AccessDenied", message, wrap=False)
        if call.service == "dynamodb":
            return _json_error(call, 400, "AccessDeniedException", message)
        if call.is_json():
            return _json_error(call, 400, "AccessDeniedException", message)
        return _xml_error(403, "AccessDenied", message)
    raise ValueError(kind)


# --------------------------------------------------------------------------- IAM


def _arn(service, region, resource):
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


def _queue_name(url_or_name):
    return url_or_name.rstrip("/").rsplit("/", 1)[-1]


def _s3_target(call):
    """Bucket and key of a path-style S3 request."""
    path = urllib.parse.unquote(call.environ.get("PATH_INFO", "/")).lstrip("/")
    bucket, _, key = path.partition("/")
    return bucket, key


def _s3_actions(call):
    bucket, key = _s3_target(call)
    method = call.environ.get("REQUEST_METHOD", "GET")
    q = call.query()
    obj = f"arn:{PARTITION}:s3:::{bucket}/{key}"
    bkt = f"arn:{PARTITION}:s3:::{bucket}"
    if not bucket:
        return [("s3:ListAllMyBuckets", "*", {})]
    if key:
        versioned = bool(q.get("versionId"))
        if method in ("GET", "HEAD"):
            if "tagging" in q:
                return [("s3:GetObjectVersionTagging" if versioned else "s3:GetObjectTagging", obj, {})]
            if "uploadId" in q:
                return [("s3:ListMultipartUploadParts", obj, {})]
            return [("s3:GetObjectVersion" if versioned else "s3:GetObject", obj, {})]
        if method == "PUT":
            if "tagging" in q:
                return [("s3:PutObjectVersionTagging" if versioned else "s3:PutObjectTagging", obj, {})]
            out = [("s3:PutObject", obj, {})]
            source = call.environ.get("HTTP_X_AMZ_COPY_SOURCE")
            if source:
                src, _, sq = urllib.parse.unquote(source).lstrip("/").partition("?")
                action = "s3:GetObjectVersion" if "versionId=" in sq else "s3:GetObject"
                out.append((action, f"arn:{PARTITION}:s3:::{src}", {}))
            return out
        if method == "POST":
            return [("s3:PutObject", obj, {})]
        if method == "DELETE":
            if "uploadId" in q:
                return [("s3:AbortMultipartUpload", obj, {})]
            action = "s3:DeleteObjectVersion" if q.get("versionId") else "s3:DeleteObject"
            return [(action, obj, {})]
        return None
    if method in ("GET", "HEAD"):
        if "versions" in q:
            return [("s3:ListBucketVersions", bkt, {})]
        if "uploads" in q:
            return [("s3:ListBucketMultipartUploads", bkt, {})]
        if "location" in q:
            return [("s3:GetBucketLocation", bkt, {})]
        if len([k for k in q if k not in ("list-type", "prefix", "continuation-token",
                                              "delimiter", "max-keys", "start-after",
                                              "encoding-type", "fetch-owner")]) == 0:
            return [("s3:ListBucket", bkt, {})]
        return None
    # DeleteObjects and every other bucket operation: not something the deployment does,
    # so a role asking is refused as an operation the door does not know.
    return None


_DYNAMO_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _dynamodb_actions(call):
    body = call.json_body()
    op = call.operation
    table = lambda name: _arn("dynamodb", call.region, f"table/{name}")  # noqa: E731
    if op == "TransactWriteItems":
        out = []
        for entry in body.get("TransactItems", []):
            for kind, item in entry.items():
                out.append((f"dynamodb:{_DYNAMO_TRANSACT[kind]}", table(item["TableName"]), {}))
        return out
    if op == "TransactGetItems":
        return [("dynamodb:GetItem", table(e["Get"]["TableName"]), {})
                for e in body.get("TransactItems", [])]
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [(f"dynamodb:{op}", table(name), {}) for name in body.get("RequestItems", {})]
    name = body.get("TableName")
    if not name:
        return [(f"dynamodb:{op}", "*", {})]
    resource = table(name)
    if body.get("IndexName"):
        resource += f"/index/{body['IndexName']}"
    return [(f"dynamodb:{op}", resource, {})]


_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs_actions(call):
    if call.is_json():
        body = call.json_body()
        target = body.get("QueueUrl") or body.get("QueueName")
    else:
        form = call.form()
        target = (form.get("QueueUrl") or form.get("QueueName") or [None])[0]
    op = _SQS_BATCH.get(call.operation, call.operation)
    if op == "ListQueues":
        return [("sqs:ListQueues", "*", {})]
    if not target:
        return None
    return [(f"sqs:{op}", _arn("sqs", call.region, _queue_name(target)), {})]


def _ecs_actions(call):
    body = call.json_body()
    op = call.operation
    cluster = body.get("cluster", "default")
    if not cluster.startswith("arn:"):
        cluster = _arn("ecs", call.region, f"cluster/{cluster}")
    ctx = {"ecs:cluster": cluster}
    if op == "RunTask":
        definition = _task_definition(call.region, body.get("taskDefinition", ""))
        if definition is None:
            return [("ecs:RunTask", _arn("ecs", call.region, "task-definition/" + body.get("taskDefinition", "")), ctx)]
        out = [("ecs:RunTask", definition.arn, ctx)]
        for role in (getattr(definition, "task_role_arn", None),
                     getattr(definition, "execution_role_arn", None)):
            if role:
                out.append(("iam:PassRole", role, {}))
        return out
    if op == "ListTasks":
        return [("ecs:ListTasks", "*", ctx)]
    if op in ("DescribeTasks", "StopTask"):
        tasks = body.get("tasks") or [body.get("task")]
        return [(f"ecs:{op}", t if t.startswith("arn:") else _arn("ecs", call.region, f"task/{t}"), ctx)
                for t in tasks if t]
    return None


def _task_definition(region, name):
    try:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][region].describe_task_definition(name)
    except Exception:  # noqa: BLE001 - an unknown definition is RunTask's own error
        return None


def _events_actions(call):
    body = call.json_body()
    if call.operation != "PutEvents":
        return None
    buses = {e.get("EventBusName") or "default" for e in body.get("Entries", [])} or {"default"}
    return [("events:PutEvents",
             b if b.startswith("arn:") else _arn("events", call.region, f"event-bus/{b}"), {})
            for b in sorted(buses)]


def _cloudfront_actions(call):
    m = re.match(r"^/[0-9-]+/distribution/([^/]+)/invalidation(/[^/]+)?$",
                 call.environ.get("PATH_INFO", ""))
    if not m:
        return None
    if call.environ.get("REQUEST_METHOD") == "POST":
        action = "cloudfront:CreateInvalidation"
    elif m.group(2):
        action = "cloudfront:GetInvalidation"
    else:
        action = "cloudfront:ListInvalidations"
    return [(action, f"arn:{PARTITION}:cloudfront::{ACCOUNT}:distribution/{m.group(1)}", {})]


def required_actions(call):
    """The IAM actions `call` needs: (action, resource ARN, condition context) each, or
    None when the front door does not know the operation (a restricted caller is then
    refused: an unmapped call must not pass unchecked)."""
    if call.service == "sts" and call.operation == "GetCallerIdentity":
        return []
    mapper = {
        "s3": _s3_actions,
        "dynamodb": _dynamodb_actions,
        "sqs": _sqs_actions,
        "ecs": _ecs_actions,
        "events": _events_actions,
        "cloudfront": _cloudfront_actions,
    }.get(call.service)
    return mapper(call) if mapper else None


def _role_policies(access_key, token):
    """The policy documents of the role `access_key` was issued for, or None when the key
    is not an assumed role's (unrestricted)."""
    if not token:
        return None
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    sts = sts_backends[ACCOUNT][PARTITION]
    for assumed in sts.assumed_roles:
        if assumed.access_key_id == access_key:
            role = assumed.role_arn.split("/")[-1]
            iam = iam_backends[ACCOUNT][PARTITION]
            docs = []
            for name in iam.list_role_policies(role):
                _, doc = iam.get_role_policy(role, name)
                docs.append(doc if isinstance(doc, dict) else json.loads(doc))
            return role, docs
    return ("unknown-session", [])


def _listify(v):
    return v if isinstance(v, list) else [v]


def _wild(pattern, value, case=True):
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


_CONDITIONS = {
    "StringEquals": lambda want, have: have == want,
    "StringLike": lambda want, have: _wild(want, have),
    "ArnEquals": lambda want, have: have == want,
    "ArnLike": lambda want, have: _wild(want, have),
    "Bool": lambda want, have: str(have).lower() == str(want).lower(),
}


def _conditions_hold(condition, ctx):
    for operator, pairs in (condition or {}).items():
        if_exists = operator.endswith("IfExists")
        test = _CONDITIONS.get(operator[: -len("IfExists")] if if_exists else operator)
        if test is None:
            return False  # an operator this door cannot evaluate never grants
        for key, wanted in pairs.items():
            have = ctx.get(key)
            if have is None:
                if if_exists:
                    continue
                return False
            if not any(test(w, have) for w in _listify(wanted)):
                return False
    return True


def _statement_applies(st, action, resource, ctx):
    if "Action" in st:
        if not any(_wild(a, action, case=False) for a in _listify(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(_wild(a, action, case=False) for a in _listify(st["NotAction"])):
            return False
    if "Resource" in st:
        if not any(_wild(r, resource) for r in _listify(st["Resource"])):
            return False
    elif "NotResource" in st:
        if any(_wild(r, resource) for r in _listify(st["NotResource"])):
            return False
    return _conditions_hold(st.get("Condition"), ctx)


def is_allowed(docs, action, resource, ctx):
    """AWS's evaluation for identity policies: an explicit Deny wins, else an Allow."""
    allowed = False
    for doc in docs:
        for st in _listify(doc.get("Statement", [])):
            if _statement_applies(st, action, resource, ctx):
                if st.get("Effect") == "Deny":
                    return False
                allowed = True
    return allowed


def _authorise(call):
    """None when `call` may proceed; else the refusal's message."""
    who = _role_policies(call.access_key, call.token)
    if who is None:
        return None, None
    role, docs = who
    needs = required_actions(call)
    with _LOCK:
        _STATE["checked"] += 1
    if needs is None:
        return role, f"{call.service}:{call.operation} is not an operation the emulator's IAM knows; refused"
    for action, resource, ctx in needs:
        if not is_allowed(docs, action, resource, ctx):
            return role, (f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role} is not authorized to "
                          f"perform: {action} on resource: {resource}")
    return role, None


def _lacks_list_bucket(call):
    who = _role_policies(call.access_key, call.token)
    if who is None:
        return False
    bucket, _ = _s3_target(call)
    return not is_allowed(who[1], "s3:ListBucket", f"arn:{PARTITION}:s3:::{bucket}", {})


# --------------------------------------------------------------------------- faults


def _fraction(seed, service, operation, n, salt):
    digest = hashlib.blake2b(f"{seed}:{service}:{operation}:{n}:{salt}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def _fault_for(call):
    """The fault `call` meets under the plan: None, or (kind, rule index, latency secs)."""
    plan = _STATE["faults"]
    if not plan:
        return None
    if plan.get("scope", "roles") == "roles" and not call.token:
        return None
    for index, rule in enumerate(plan.get("rules", [])):
        if not fnmatch.fnmatchcase(call.service, rule.get("service", "*")):
            continue
        if not fnmatch.fnmatchcase(call.operation, rule.get("operation", "*")):
            continue
        if rule.get("match") and rule["match"] not in call.resource_text():
            continue
        seed = plan.get("seed", 0)
        with _LOCK:
            key = (call.service, call.operation)
            n = _STATE["counters"].get(key, 0)
            _STATE["counters"][key] = n + 1
            x = _fraction(seed, call.service, call.operation, n, "kind")
            kinds = [("lost", rule.get("lost", 0.0)), ("throttle", rule.get("throttle", 0.0))]
            if call.service == "dynamodb" and call.operation == "TransactWriteItems":
                kinds.append(("conflict", rule.get("conflict", 0.0)))
            chosen = "none"
            for kind, p in kinds:
                if x < p:
                    chosen = kind
                    break
                x -= p
            # A rule's limit is taken here, under the lock, so it holds under concurrency.
            if chosen != "none":
                hits = _STATE["rule_hits"].get(index, 0)
                if rule.get("limit") is not None and hits >= rule["limit"]:
                    chosen = "none"
                else:
                    _STATE["rule_hits"][index] = hits + 1
        lo, hi = rule.get("latency_ms", [0, 0])
        latency = (lo + (hi - lo) * _fraction(seed, call.service, call.operation, n, "latency")) / 1000.0
        return (chosen, index, latency, n)
    return None


def _count(call, kind):
    with _LOCK:
        entry = _STATE["injected"].setdefault(f"{call.service}:{call.operation}", {})
        entry[kind] = entry.get(kind, 0) + 1


def _cancelled(call, code, message):
    """A transaction cancelled with `code` as its first item's reason."""
    items = call.json_body().get("TransactItems", [])
    reasons = [{"Code": "None"} for _ in items]
    if reasons:
        reasons[0] = {"Code": code, "Message": message}
    codes = ", ".join(r["Code"] for r in reasons)
    return _json_error(call, 400, "TransactionCanceledException",
                       f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                       {"CancellationReasons": reasons})


# --------------------------------------------------------------------------- the door


_REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified",
            400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            412: "Precondition Failed", 416: "Range Not Satisfiable",
            500: "Internal Server Error", 503: "Slow Down"}


def _respond(start_response, status, headers, body):
    """A response the door made itself (its length is its body's)."""
    headers = [h for h in headers if h[0].lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [body]


def _pass(start_response, status, headers, body):
    """moto's own response, headers untouched (a HEAD keeps the object's length)."""
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [body]


def _call_moto(app_call, environ):
    captured = {}

    def capture(status, headers, exc_info=None):
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = list(headers)
        return lambda data: None

    chunks = b"".join(app_call(environ, capture))
    return captured.get("status", 500), captured.get("headers", []), chunks


def control(environ, start_response):
    """The `/_vodpipe/faults` and `/_vodpipe/iam` endpoints; None for other paths."""
    path = environ.get("PATH_INFO")
    if path not in ("/_vodpipe/faults", "/_vodpipe/iam"):
        return None
    method = environ.get("REQUEST_METHOD")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
    with _LOCK:
        if path == "/_vodpipe/faults":
            if method == "POST":
                _STATE["faults"] = body
            if method in ("POST", "DELETE"):
                _STATE["counters"].clear()
                _STATE["injected"].clear()
                _STATE["rule_hits"].clear()
            if method == "DELETE":
                _STATE["faults"] = None
            out = {"plan": _STATE["faults"], "injected": _STATE["injected"]}
        else:
            if method == "POST":
                _STATE["enforce"] = bool(body.get("enforce", True))
            if method == "DELETE":
                _STATE["denials"].clear()
                _STATE["checked"] = 0
            out = {"enforce": _STATE["enforce"], "checked": _STATE["checked"],
                   "denials": _STATE["denials"]}
    return _respond(start_response, 200, [("Content-Type", "application/json")],
                    json.dumps(out).encode())


# Requests a token makes idempotent in AWS (a repeat answers as the first did), and moto
# ignores: the operation and the token's parameter.
_IDEMPOTENCY_TOKENS = {
    ("dynamodb", "TransactWriteItems"): "ClientRequestToken",
    ("ecs", "RunTask"): "clientToken",
}


def handle(app_call, environ, start_response, service, operation):
    """Serves one AWS request through IAM and the fault plan, then moto."""
    call = Call(environ, service, operation)
    if _STATE["enforce"]:
        role, refusal = _authorise(call)
        if refusal:
            with _LOCK:
                _STATE["denials"].append({"role": role, "service": service,
                                          "operation": operation, "message": refusal})
            return _respond(start_response, *error_response(call, "denied", refusal))
    fault = _fault_for(call)
    if fault and fault[2] > 0:
        time.sleep(fault[2])
    kind = fault[0] if fault else "none"
    transaction = service == "dynamodb" and operation == "TransactWriteItems"
    if kind == "throttle":
        _count(call, kind)
        # DynamoDB throttles a transaction either way: the whole request, or as the
        # reason it was cancelled (which the SDK does not retry); both are injected.
        if transaction and _fraction(_STATE["faults"].get("seed", 0), service, operation,
                                     fault[3], "shape") < 0.5:
            return _respond(start_response, *_cancelled(
                call, "ThrottlingError", "Throughput exceeds the current capacity of your table"))
        return _respond(start_response, *error_response(call, "throttle", "Rate exceeded"))
    if kind == "conflict":
        _count(call, kind)
        return _respond(start_response, *_cancelled(
            call, "TransactionConflict", "Transaction is ongoing for the item"))
    token = None
    if (service, operation) in _IDEMPOTENCY_TOKENS:
        token = call.json_body().get(_IDEMPOTENCY_TOKENS[(service, operation)])
        token = f"{service}:{operation}:{token}" if token else None
        with _LOCK:
            cached = _STATE["tokens"].get(token) if token else None
        if cached and cached[0] > time.time():
            return _pass(start_response, *cached[1:])
    status, headers, body = _call_moto(app_call, environ)
    if token and status < 300:
        with _LOCK:
            # DynamoDB keeps a token for ten minutes.
            _STATE["tokens"][token] = (time.time() + 600, status, headers, body)
    if (status == 404 and service == "s3" and _STATE["enforce"]
            and environ.get("REQUEST_METHOD") in ("GET", "HEAD") and _s3_target(call)[1]
            and _lacks_list_bucket(call)):
        return _respond(start_response, *error_response(call, "denied", "Access Denied"))
    if kind == "lost" and status < 300:
        _count(call, kind)
        return _respond(start_response, *error_response(
            call, "internal", "We encountered an internal error. Please try again."))
    return _pass(start_response, status, headers, body)


# --------------------------------------------------------------------------- moto's gaps


def patch_ecs_list_tasks():
    """`ListTasks` filters on `desiredStatus` RUNNING unless asked otherwise, as ECS does."""
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.list_tasks

    def running_by_default(self, cluster_str=None, container_instance=None, family=None,
                           started_by=None, service_name=None, desiredStatus=None):
        return original(self, cluster_str, container_instance, family, started_by,
                        service_name, desiredStatus or "RUNNING")

    EC2ContainerServiceBackend.list_tasks = running_by_default


# --------------------------------------------------------------------------- S3 events

_SEQUENCER = {"n": 0}


def patch_s3_events():
    """S3 event records as S3 sends them: with the object's `versionId` (versioned
    buckets) and a `sequencer` that orders the events of one key."""
    import moto.s3.notifications as notifications

    original = notifications._get_s3_event

    def with_version_and_sequencer(event_name, bucket, key, notification_id):
        event = original(event_name, bucket, key, notification_id)
        with _LOCK:
            _SEQUENCER["n"] += 1
            sequencer = f"{_SEQUENCER['n']:016X}"
        for record in event["Records"]:
            obj = record["s3"]["object"]
            version = getattr(key, "version_id", None)
            if version and version != "null":
                obj["versionId"] = version
            obj["sequencer"] = sequencer
        return event

    notifications._get_s3_event = with_version_and_sequencer
