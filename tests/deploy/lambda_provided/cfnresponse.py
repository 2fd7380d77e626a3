"""The ``cfnresponse`` module Lambda adds to a function whose code is inline (``ZipFile``).

Only CloudFormation's inline-code path has it, so the deploy helper's test runs need it beside
the code. It follows the module AWS publishes ("cfn-response module", AWS CloudFormation User
Guide, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cfn-lambda-function-code-cfnresponsemodule.html;
MIT-0): ``send(event, context, responseStatus, responseData, physicalResourceId=None,
noEcho=False, reason=None)`` PUTs the response object to the pre-signed ``ResponseURL`` with
urllib3 (which the runtime has, as botocore's dependency).
"""

import json

import urllib3

SUCCESS = "SUCCESS"
FAILED = "FAILED"

http = urllib3.PoolManager()


def send(event, context, responseStatus, responseData, physicalResourceId=None,
         noEcho=False, reason=None):
    response_body = json.dumps({
        "Status": responseStatus,
        "Reason": reason or f"See the details in CloudWatch Log Stream: {context.log_stream_name}",
        "PhysicalResourceId": physicalResourceId or context.log_stream_name,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": noEcho,
        "Data": responseData,
    })
    headers = {"content-type": "", "content-length": str(len(response_body))}
    try:
        response = http.request("PUT", event["ResponseURL"], headers=headers, body=response_body)
        print("Status code:", response.status)
    except Exception as exc:
        print("send(..) failed executing http.request(..):", exc)
