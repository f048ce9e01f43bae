"""Deploy phase building blocks: `config` (deployment.yaml), `variant` (which variant, staged copy),
`image` (offline docker image build, reused when unchanged), `targets` (docker / aml / kubernetes
behind one protocol), `approvals` + `ado` (the approval gate), `audit` (tamper-evident logs).
The phase itself is `genaiops.phases.deploy.run_deploy`; the CLI is `genaiops.cli.deploy`."""
