"""The GPU hosts' cloud-init user data, one per tier, from the files in files/ (the single source), and
the launch templates' UserData blocks in template.yaml kept equal to it."""
