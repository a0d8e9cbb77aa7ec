"""The S3 trigger Lambda of the async endpoint (handler.py is zipped alone by deploy_async.py)."""
