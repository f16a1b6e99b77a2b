"""The architecture you can see: the API process never loads torch or the models."""

from __future__ import annotations

import subprocess
import sys


def test_api_process_does_not_import_torch_or_models():
    code = (
        "import sys\n"
        "from moderation.api.main import create_app\n"
        "create_app()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'models', 'workers', 'numpy'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_domain_and_policy_import_no_frameworks():
    code = (
        "import sys\n"
        "import moderation.domain, moderation.policy\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'sqlalchemy', 'celery', 'torch', 'pydantic'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
