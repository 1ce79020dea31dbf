"""A cold start in a fresh interpreter: import a handler, then its first two invocations.

Run as `python -S bench/first_call.py SPEC.json` by bench.cold_import (not imported): the
clock starts before anything but `sys` and `time`, the handler comes from the paths in the
spec (the Lambda layout), and every AWS call is answered in memory at botocore's
`before-send`, after the request was validated, serialised and signed, as moto hooks in.
Only the standard library is used here besides what the handler itself imports, so the
measured process holds what a Lambda cold start holds.

Prints one JSON line: import_ms, first_call_ms, second_call_ms (each its own span) and
first_invocation_ms (the interpreter's import of the handler plus its first invocation).
"""

import sys
import time

STARTED = time.perf_counter()
del sys.path[0]  # this file's folder (bench/) is no part of the Lambda layout

import hashlib  # noqa: E402 - after the clock starts, on purpose
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402


class _Context:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "bench")
    memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"))
    invoked_function_arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}"
    aws_request_id = "bench-first-call"
    function_version = "$LATEST"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _answer_aws(spec: dict) -> None:  # type: ignore[type-arg]
    import botocore.handlers
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    class RawBody(io.BytesIO):
        def stream(self, **kwargs: object) -> object:
            contents = self.read()
            while contents:
                yield contents
                contents = self.read()

    items: dict = spec.get("items", {})  # type: ignore[type-arg]
    secret = spec.get("secret", "")

    def answer(request: object, **_: object) -> AWSResponse:
        headers = request.headers  # type: ignore[attr-defined]
        target = headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rpartition(".")[2]
        body = request.body  # type: ignore[attr-defined]
        sent = json.loads(body) if body else {}
        document: dict = {}  # type: ignore[type-arg]
        if operation == "SendMessageBatch":
            document = {
                "Successful": [
                    {
                        "Id": e["Id"],
                        "MessageId": f"m-{e['Id']}",
                        "MD5OfMessageBody": hashlib.md5(e["MessageBody"].encode(), usedforsecurity=False).hexdigest(),
                    }
                    for e in sent["Entries"]
                ],
                "Failed": [],
            }
        elif operation == "GetItem" and sent.get("TableName") in items:
            document = {"Item": items[sent["TableName"]]}
        elif operation == "GetSecretValue":
            document = {"ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bench", "SecretString": secret}
        elif operation == "UpdateItem":
            document = {"Attributes": {}}
        raw = json.dumps(document).encode()
        answer_headers = HTTPHeaders.from_dict(
            {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "bench"}
        )
        return AWSResponse(request.url, 200, answer_headers, RawBody(raw))  # type: ignore[attr-defined]

    botocore.handlers.BUILTIN_HANDLERS.append(("before-send", answer))


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    sys.path[:0] = spec["path"]
    sink = io.StringIO()
    sys.stdout = sink  # the handler's log lines are not this script's answer
    if spec.get("answer_aws_before_import"):
        _answer_aws(spec)  # an init that builds clients (SnapStart's priming) needs AWS answered
    began_import = time.perf_counter()
    module = importlib.import_module(spec["module"])
    imported = time.perf_counter()
    if not spec.get("answer_aws_before_import"):
        _answer_aws(spec)  # botocore is imported by now; sessions are created on the first call
    handler = getattr(module, spec["attribute"])
    context = _Context()
    check = spec.get("check_status")
    answers = []
    spans = []
    for event in spec["events"]:
        start = time.perf_counter()
        answer = handler(event, context)
        spans.append((time.perf_counter() - start) * 1000)
        answers.append(answer)
    sys.stdout = sys.__stdout__
    for answer in answers:
        if check is not None and answer.get("statusCode") != check:
            raise SystemExit(f"the handler answered {answer}")
        if answer.get("batchItemFailures"):
            raise SystemExit(f"the handler left records on the queue: {answer}")
    print(
        json.dumps(
            {
                "import_ms": round((imported - began_import) * 1000, 2),
                "first_call_ms": round(spans[0], 2),
                "second_call_ms": round(spans[1], 2) if len(spans) > 1 else None,
                "first_invocation_ms": round((imported - began_import) * 1000 + spans[0], 2),
                "process_ms": round((time.perf_counter() - STARTED) * 1000, 2),
            }
        )
    )


main()
