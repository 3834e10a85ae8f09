"""An SQS service model for botocore that speaks the Query protocol instead of JSON 1.0.

botocore dropped SQS's Query model when SQS moved to JSON; the JSON model keeps the shapes but
not the XML/form names. This rebuilds them: the wire names below are the ones of the last Query
model (botocore 1.31), and every operation's output gets its `<Operation>Result` wrapper.
The exceptions get back their Query error codes, so that `client.exceptions.QueueDoesNotExist`
is raised for `<Code>AWS.SimpleQueueService.NonExistentQueue</Code>` as it was.
"""

import copy

# Flattened lists: the form/XML name of one element (`AttributeName.1=...`, `<QueueUrl>`).
LIST_MEMBER_NAMES = {
    "AWSAccountIdList": "AWSAccountId",
    "ActionNameList": "ActionName",
    "AttributeNameList": "AttributeName",
    "MessageAttributeNameList": "MessageAttributeName",
    "MessageSystemAttributeList": "MessageSystemAttributeName",
    "BatchResultErrorEntryList": "BatchResultErrorEntry",
    "ChangeMessageVisibilityBatchRequestEntryList": "ChangeMessageVisibilityBatchRequestEntry",
    "ChangeMessageVisibilityBatchResultEntryList": "ChangeMessageVisibilityBatchResultEntry",
    "DeleteMessageBatchRequestEntryList": "DeleteMessageBatchRequestEntry",
    "DeleteMessageBatchResultEntryList": "DeleteMessageBatchResultEntry",
    "SendMessageBatchRequestEntryList": "SendMessageBatchRequestEntry",
    "SendMessageBatchResultEntryList": "SendMessageBatchResultEntry",
    "ListMessageMoveTasksResultEntryList": "ListMessageMoveTasksResultEntry",
    "MessageList": "Message",
    "QueueUrlList": "QueueUrl",
    "TagKeyList": "TagKey",
}

# Structure members holding a map or list: the name of one entry (`Attribute.1.Name=...`).
MEMBER_NAMES = {
    "Attributes": "Attribute",
    "MessageAttributes": "MessageAttribute",
    "MessageSystemAttributes": "MessageSystemAttribute",
    "tags": "Tag",
    "Tags": "Tag",
}

# Flattened maps: the names of an entry's key and value.
MAP_ENTRY_NAMES = {"TagMap": ("Key", "Value")}
DEFAULT_MAP_ENTRY_NAMES = ("Name", "Value")

# Exceptions whose Query error code is not their name.
PREFIXED_ERRORS = (
    "BatchEntryIdsNotDistinct",
    "BatchRequestTooLong",
    "EmptyBatchRequest",
    "InvalidBatchEntryId",
    "MessageNotInflight",
    "PurgeQueueInProgress",
    "QueueDeletedRecently",
    "TooManyEntriesInBatchRequest",
    "UnsupportedOperation",
)
ERROR_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    **{name: f"AWS.SimpleQueueService.{name}" for name in PREFIXED_ERRORS},
}


def query_model(json_model):
    """A copy of botocore's JSON SQS model (`service-2.json`) that uses the Query protocol."""
    model = copy.deepcopy(json_model)
    metadata = model["metadata"]
    metadata["protocol"] = "query"
    metadata["protocols"] = ["query"]
    metadata["xmlNamespace"] = "http://queue.amazonaws.com/doc/2012-11-05/"
    for key in ("awsQueryCompatible", "jsonVersion", "targetPrefix"):
        metadata.pop(key, None)

    for name, shape in model["shapes"].items():
        if shape["type"] == "list" and name in LIST_MEMBER_NAMES:
            shape["member"]["locationName"] = LIST_MEMBER_NAMES[name]
        elif shape["type"] == "map" and shape.get("flattened"):
            key_name, value_name = MAP_ENTRY_NAMES.get(name, DEFAULT_MAP_ENTRY_NAMES)
            shape["key"]["locationName"] = key_name
            shape["value"]["locationName"] = value_name
        elif shape["type"] == "structure":
            for member_name, member in shape["members"].items():
                if member_name in MEMBER_NAMES:
                    member["locationName"] = MEMBER_NAMES[member_name]

    for name, code in ERROR_CODES.items():
        model["shapes"][name]["error"] = {"code": code}

    for name, operation in model["operations"].items():
        if "output" in operation:
            operation["output"]["resultWrapper"] = f"{name}Result"
    return model
