"""Where the project's bundled inputs are."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
POLICIES = ROOT / "policies"
CORPUS = ROOT.parent / "shared" / "corpus" / "np-guard"
