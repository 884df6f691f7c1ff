"""The client side of start-and-poll, calling the agent through AgentCore Runtime's API.

Serve examples/start_and_poll.py under the local runtime, then run this script:

    agentcore-sync emulate examples/start_and_poll.py:app
    python examples/clients/start_and_poll.py

It starts a task in a new session, polls until its result is there, ends the
session (StopRuntimeSession; an idle timeout would end it the same way), and asks
for the result again with the same session id, which a new microVM answers.
With the default result store, on the session's local disk, the result is gone
with the old microVM; with a store outside it (``AGENTCORE_SYNC_RESULT_STORE=
redis://...`` or ``dynamodb://TABLE`` where the emulator runs), it is still there.

Against AgentCore Runtime itself, pass ``--endpoint ''`` and the agent's ``--arn``.
"""

import argparse
import json
import sys
import time
import uuid

import boto3

LOCAL = "http://127.0.0.1:8090"
ANY_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/start_and_poll-local"


def agentcore_client(endpoint: str):
    """boto3's client; any credentials do for a local endpoint."""
    if not endpoint:
        return boto3.client("bedrock-agentcore")
    session = boto3.Session()
    return session.client(
        "bedrock-agentcore",
        endpoint_url=endpoint,
        region_name=session.region_name or "us-east-1",
        **(
            {}
            if session.get_credentials() is not None
            else {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        ),
    )


def call(client, arn: str, session_id: str, payload: dict) -> dict:
    answer = client.invoke_agent_runtime(
        agentRuntimeArn=arn, runtimeSessionId=session_id, payload=json.dumps(payload)
    )
    return json.loads(answer["response"].read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default=LOCAL, help=f"data plane URL [{LOCAL}]")
    parser.add_argument("--arn", default=ANY_ARN, help="the agent runtime's ARN")
    parser.add_argument("--seconds", type=float, default=1.0, help="how long the task runs")
    args = parser.parse_args()
    client = agentcore_client(args.endpoint)
    session_id = f"start-and-poll-{uuid.uuid4()}"

    started = call(client, args.arn, session_id, {"action": "start", "seconds": args.seconds})
    task_id = started["task_id"]
    print(f"started task {task_id} in session {session_id}")
    deadline = time.monotonic() + args.seconds + 30
    while True:
        result = call(client, args.arn, session_id, {"action": "result", "task_id": task_id})
        if result.get("status") not in ("still running",) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"result while the session lives: {json.dumps(result)}")

    client.stop_runtime_session(agentRuntimeArn=args.arn, runtimeSessionId=session_id)
    print(f"session {session_id} ended: its microVM is gone")

    again = call(client, args.arn, session_id, {"action": "result", "task_id": task_id})
    print(f"result asked again, from a new microVM: {json.dumps(again)}")
    if again.get("status") == "not found":
        print("LOST: the result was kept on the ended microVM's disk")
    else:
        print("KEPT: the result outlived the microVM in the result store")
    return 0


if __name__ == "__main__":
    sys.exit(main())
