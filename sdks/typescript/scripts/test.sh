#!/usr/bin/env bash
# Install the SDK's pinned dev tools (package-lock.json), compile it to dist/ (with its
# declaration files) and the tests to build-test/, and run the tests with Node's test runner
# against a real `modelbus serve` they start themselves (the repository's .venv/bin/modelbus,
# or MODELBUS_BIN). Usage: sdks/typescript/scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefer-offline --no-audit --no-fund --loglevel=error
npm test
