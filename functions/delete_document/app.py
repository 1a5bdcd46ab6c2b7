def handler(event, context):  # placeholder
    return event
