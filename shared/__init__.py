"""The push backend's shared package: settings, validation, the data model and storage.

Function folders import from here absolutely (`from shared import ...`), as the Azure Functions
Python v1 model expects of a package at the app root.
"""
