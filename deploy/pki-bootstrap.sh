#!/usr/bin/env bash
# Creates the system PKI and one agent certificate per subcloud named on the command line.
#   deploy/pki-bootstrap.sh /etc/dc-rootca/pki controller.example.com subcloud1 subcloud2 ...
# Copy /etc/dc-rootca/pki/agents/<name>/ to that subcloud's /etc/dc-rootca/agent/.
set -euo pipefail
pki=${1:?usage: $0 PKI_DIR CONTROLLER_NAME [SUBCLOUD...]}
controller=${2:?usage: $0 PKI_DIR CONTROLLER_NAME [SUBCLOUD...]}
shift 2
if [ ! -e "$pki/ca.key" ]; then
  dc-certs init --out "$pki" --san "$controller"
fi
for subcloud in "$@"; do
  dc-certs issue-agent --ca "$pki" --name "$subcloud" --out "$pki/agents/$subcloud"
done
