"""The ``moderation`` command: run the service, run workers, migrate, administer schools."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, TypedDict

import typer
from pydantic import ValidationError

from moderation.config import get_settings
from moderation.errors import ModerationError
from moderation.policy import CheckResults
from moderation.queue import ALL_QUEUES

app = typer.Typer(help="School moderation gate.", no_args_is_help=True)
admin = typer.Typer(help="Schools, API keys and rosters.", no_args_is_help=True)
policy_app = typer.Typer(help="The school's policy: show, set, try out.", no_args_is_help=True)
app.add_typer(admin, name="admin")
app.add_typer(policy_app, name="policy")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run again)."""
    from moderation.storage.migrate import upgrade

    settings = get_settings()
    settings.ensure_data_dir()
    upgrade(settings.database_url)
    typer.echo(f"database is up to date: {_safe_url(settings.database_url)}")


def _safe_url(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _worker_argv(queues: str, concurrency: int, pool: str, beat: bool) -> list[str]:
    settings = get_settings()
    argv = [
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        settings.log_level,
        "--hostname",
        f"moderation-{os.getpid()}@%h",
    ]
    if beat:
        argv += ["--beat", "--schedule", str(settings.data_dir / "beat-schedule")]
    return argv


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume")] = ",".join(
        ALL_QUEUES
    ),
    concurrency: Annotated[int, typer.Option(help="Worker processes")] = 1,
    pool: Annotated[str, typer.Option(help="prefork, solo or threads")] = "prefork",
    beat: Annotated[bool, typer.Option(help="Also run the sweeper schedule (one node)")] = False,
) -> None:
    """Run a Celery worker; start as many as needed, on as many machines as needed."""
    unknown = set(queues.split(",")) - set(ALL_QUEUES)
    if unknown:
        _fail(f"unknown queues {sorted(unknown)}; choose from {', '.join(ALL_QUEUES)}")
    get_settings().ensure_data_dir()
    from workers.app import app as celery_app

    celery_app.worker_main(_worker_argv(queues, concurrency, pool, beat))


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port")] = None,
    embedded_worker: Annotated[
        bool, typer.Option(help="Start a worker (with the sweeper) beside the API")
    ] = True,
    run_migrations: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Migrate the database first")
    ] = True,
) -> None:
    """Run the API (and, by default, one worker beside it): the embedded set-up."""
    import uvicorn

    settings = get_settings()
    if run_migrations:
        migrate()
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so
    # the ``finally`` below still stops the embedded worker
    signal.signal(signal.SIGTERM, _exit_on_signal)
    child = None
    if embedded_worker and settings.embedded_worker:
        cmd = [sys.executable, "-m", "moderation.cli", "worker", "--pool", "solo", "--beat"]
        child = subprocess.Popen(cmd)
        typer.echo(f"worker started (pid {child.pid})")
    try:
        uvicorn.run(
            "moderation.api.main:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            log_level=settings.log_level.lower(),
        )
    finally:
        if child is not None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


@admin.command("create-school")
def create_school(
    school_id: Annotated[str, typer.Option("--id", help="The platform's id for the school")],
    name: Annotated[str, typer.Option(help="The school's name")],
    webhook_url: Annotated[str | None, typer.Option(help="Where decisions are sent")] = None,
) -> None:
    """Create a school and print its API key and webhook secret (shown only once)."""
    from moderation.storage.db import session_scope
    from moderation.storage.schools import create_school as create

    settings = get_settings()
    migrate()
    try:
        with session_scope(settings.database_url) as session:
            new = create(
                session=session,
                school_id=school_id,
                name=name,
                pepper=settings.api_key_pepper,
                webhook_url=webhook_url,
            )
            secret = new.school.webhook_secret
            review_secret = new.school.review_secret
    except ModerationError as exc:
        _fail(exc.message)
    typer.echo(f"school {school_id} created")
    typer.echo(f"API key (shown once, store it now): {new.api_key}")
    typer.echo(f"webhook secret (verifies our callbacks): {secret}")
    typer.echo(f"review secret (signs the review page's sign-in tokens): {review_secret}")


@admin.command("import-roster")
def import_roster(
    school: Annotated[str, typer.Option(help="The school's id")],
    files: Annotated[list[Path], typer.Argument(help="Pupil, staff and consent CSV files")],
) -> None:
    """Import groups, pupils, staff, parents and consent from CSV exports."""
    from moderation.roster_csv import read_roster_files
    from moderation.storage.db import session_scope
    from moderation.storage.roster import apply_roster
    from moderation.storage.schools import get_school

    settings = get_settings()
    for path in files:
        if not path.is_file():
            _fail(f"{path} is not a file")
    try:
        roster = read_roster_files(files)
        with session_scope(settings.database_url) as session:
            get_school(session=session, school_id=school)
            result = apply_roster(session=session, school_id=school, roster=roster, source="import")
    except ModerationError as exc:
        _fail(f"{exc.message} (nothing was imported)")
    except ValidationError as exc:
        _fail(f"a row is not valid: {exc.errors()[0]['msg']} (nothing was imported)")
    typer.echo(
        f"imported {result.groups} groups, {result.students} pupils, {result.staff} staff, "
        f"{result.parents} parents, {result.consent} consent answers"
    )
    if result.withdrawn:
        from moderation.queue import enqueuer_for

        pupils = enqueuer_for(settings).recheck_withdrawn(school, result.withdrawn)
        typer.echo(
            f"consent withdrawn for {pupils} pupils: the school's released photos are checked again"
        )


def _photo_problem(exc: Exception) -> str:
    """One line for a photo the CLI could not use: the stable code, then the reason."""
    code = getattr(exc, "code", type(exc).__name__)
    return f"{code}: {getattr(exc, 'message', None) or exc}"


@admin.command("enrol")
def enrol(
    school: Annotated[str, typer.Option(help="The school's id")],
    student: Annotated[str, typer.Option(help="The student's id, as in the roster")],
    photos: Annotated[list[Path], typer.Argument(help="Reference photos, one face each")],
    by: Annotated[str, typer.Option(help="Who enrols (audit)")] = "cli",
) -> None:
    """Enrol reference photos of a child: only the face descriptors are stored."""
    from moderation.media import MediaError
    from moderation.photo_intake import REFERENCE_MODEL, read_photo, reference_embedding
    from moderation.queue import enqueuer_for
    from moderation.storage.db import session_scope
    from moderation.storage.references import enrol_reference
    from moderation.storage.roster import get_student
    from moderation.storage.schools import get_school

    settings = get_settings()
    try:
        with session_scope(settings.database_url) as session:
            get_school(session=session, school_id=school)
            get_student(session=session, school_id=school, student_id=student)
    except ModerationError as exc:
        _fail(exc.message)
    typer.echo("loading the face model ...", err=True)
    enrolled = 0
    for number, path in enumerate(photos, 1):
        prefix = f"[{number}/{len(photos)}] {path}"
        try:
            image = read_photo(path.read_bytes(), None, max_bytes=settings.max_attachment_bytes)
            embedding = reference_embedding(image)
            with session_scope(settings.database_url) as session:
                info = enrol_reference(
                    session=session,
                    school_id=school,
                    student_id=student,
                    embedding=embedding,
                    model=REFERENCE_MODEL,
                    enrolled_by=by,
                    source="cli",
                )
        except (OSError, MediaError, ModerationError) as exc:
            typer.secho(f"{prefix}: not enrolled, {_photo_problem(exc)}", fg="red", err=True)
            continue
        enrolled += 1
        typer.echo(f"{prefix}: enrolled as reference {info.id}")
    if enrolled:
        enqueuer_for(settings).recheck(school, student, "reference_added")
    summary = f"enrolled {enrolled} of {len(photos)} photos for student {student}"
    if enrolled < len(photos):
        _fail(summary)
    typer.echo(summary)


@admin.command("erase-references")
def erase_references(
    school: Annotated[str, typer.Option(help="The school's id")],
    student: Annotated[str, typer.Option(help="The student's id")],
    reference: Annotated[int | None, typer.Option(help="Only this reference id")] = None,
    by: Annotated[str, typer.Option(help="Who asks (audit)")] = "cli",
) -> None:
    """Delete a child's enrolled face descriptors (all, or one)."""
    from moderation.storage.db import session_scope
    from moderation.storage.references import erase_references as erase
    from moderation.storage.schools import get_school

    try:
        with session_scope(get_settings().database_url) as session:
            get_school(session=session, school_id=school)
            erased = erase(
                session=session,
                school_id=school,
                student_id=student,
                actor=f"cli:{by}",
                reference_id=reference,
            )
    except ModerationError as exc:
        _fail(exc.message)
    typer.echo(f"erased {len(erased)} references of student {student}")


@admin.command("erase-student")
def erase_student(
    school: Annotated[str, typer.Option(help="The school's id")],
    student: Annotated[str, typer.Option(help="The student's id")],
    by: Annotated[str, typer.Option(help="Who asks (audit)")] = "cli",
) -> None:
    """Erase a student (GDPR): roster entry, consent answers, references and tags."""
    from moderation.storage.db import session_scope
    from moderation.storage.references import erase_student as erase
    from moderation.storage.schools import get_school

    try:
        with session_scope(get_settings().database_url) as session:
            get_school(session=session, school_id=school)
            done = erase(session=session, school_id=school, student_id=student, actor=f"cli:{by}")
    except ModerationError as exc:
        _fail(exc.message)
    typer.echo(
        f"erased student {student}: {done.consent_answers} consent answers, "
        f"{done.references} references, {done.tags} tags; "
        f"{done.takedowns_unlinked} takedown reports unlinked"
    )


@admin.command("block-image")
def block_image(
    school: Annotated[str, typer.Option(help="The school's id")],
    file: Annotated[Path, typer.Argument(help="The image to block (JPEG, PNG, WebP, GIF)")],
    note: Annotated[str | None, typer.Option(help="Why it is blocked")] = None,
    by: Annotated[str, typer.Option(help="Who blocks it (audit)")] = "cli",
) -> None:
    """Put an image on the school's block list: re-posts, also resized or cropped, are caught."""
    from moderation.media import MediaError
    from moderation.photo_intake import image_hash_strings, read_photo
    from moderation.storage.db import session_scope
    from moderation.storage.image_hashes import block_image as block
    from moderation.storage.schools import get_school

    settings = get_settings()
    try:
        image = read_photo(file.read_bytes(), None, max_bytes=settings.max_attachment_bytes)
        hashes = image_hash_strings(image)
        with session_scope(settings.database_url) as session:
            get_school(session=session, school_id=school)
            entry = block(session=session, school_id=school, hashes=hashes, note=note, added_by=by)
    except (OSError, MediaError, ModerationError) as exc:
        _fail(f"{file}: {_photo_problem(exc)} (nothing was blocked)")
    typer.echo(f"blocked {file} as entry {entry.entry} (pHash {entry.phash})")


@policy_app.command("show")
def policy_show(
    school: Annotated[str, typer.Option(help="The school's id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML")] = False,
) -> None:
    """Print the policy in force (version 0 is the house policy)."""
    from moderation.policy_document import dump_document
    from moderation.storage.db import session_scope
    from moderation.storage.policies import current_document
    from moderation.storage.schools import get_school

    with session_scope(get_settings().database_url) as session:
        try:
            get_school(session=session, school_id=school)
        except ModerationError as exc:
            _fail(exc.message)
        version, document = current_document(session=session, school_id=school)
    typer.echo(f"# policy version {version} of school {school}")
    typer.echo(dump_document(document, as_json=as_json))


@policy_app.command("set")
def policy_set(
    school: Annotated[str, typer.Option(help="The school's id")],
    file: Annotated[Path, typer.Argument(help="The policy, YAML or JSON")],
    actor: Annotated[str, typer.Option(help="Who makes the change (audit)")] = "cli",
) -> None:
    """Validate a policy file and make it the school's next version."""
    from moderation.policy_document import parse_document
    from moderation.storage.db import session_scope
    from moderation.storage.policies import set_policy
    from moderation.storage.schools import get_school

    try:
        document = parse_document(file.read_bytes())
        with session_scope(get_settings().database_url) as session:
            get_school(session=session, school_id=school)
            row = set_policy(session=session, school_id=school, document=document, actor=actor)
            version = row.version
    except (OSError, ModerationError) as exc:
        _fail(f"{getattr(exc, 'message', exc)} (the policy was not changed)")
    typer.echo(f"school {school} now runs policy version {version}")


@policy_app.command("test")
def policy_test(
    school: Annotated[str, typer.Option(help="The school's id")],
    policy_file: Annotated[Path, typer.Option("--policy", help="The proposed policy file")],
    posts_file: Annotated[Path, typer.Argument(help="Posts, one JSON object a line")],
    show: Annotated[str, typer.Option(help="changed (default) or all lines")] = "changed",
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON")] = False,
) -> None:
    """Dry run: what the current and the proposed policy decide, side by side."""
    import json as json_

    from moderation.dry_run import dry_run, read_posts, summary
    from moderation.policy_document import parse_document
    from moderation.storage.db import session_scope
    from moderation.storage.policies import current_policy
    from moderation.storage.roster import student_names
    from moderation.storage.schools import get_school
    from workers.pipeline import analyse_text, text_results
    from workers.scorers import text_scorer

    settings = get_settings()
    try:
        proposed = parse_document(policy_file.read_bytes()).to_policy("proposed")
        posts = read_posts(posts_file)
        with session_scope(settings.database_url) as session:
            get_school(session=session, school_id=school)
            current = current_policy(session=session, school_id=school)
            names = student_names(session=session, school_id=school)
    except (OSError, ModerationError) as exc:
        _fail(str(getattr(exc, "message", exc)))
    scorer = text_scorer(settings)

    def analyse(text: str) -> CheckResults:
        return text_results(analyse_text(text, scorer=scorer, policy=proposed, names=names))

    lines = dry_run(posts, analyse, current, proposed)
    counts = summary(lines)
    if as_json:
        typer.echo(json_.dumps(counts, indent=2))
        return
    typer.echo(f"{'current':<9} {'proposed':<9} text")
    for line in lines:
        if show == "all" or line.changed:
            mark = "*" if line.changed else " "
            text = line.text.replace("\n", " ")
            typer.echo(
                f"{line.current.action.value:<9} {line.proposed.action.value:<8}{mark} {text[:90]}"
            )
    typer.echo("")
    for action in ("release", "hold", "reject"):
        typer.echo(
            f"{action:<8} current {counts['current'][action]:>5}   "
            f"proposed {counts['proposed'][action]:>5}"
        )
    for move, n in sorted(counts["changes"].items()):
        typer.echo(f"  {move}: {n}")


@admin.command("review-link")
def review_link(
    school: Annotated[str, typer.Option(help="The school's id")],
    user: Annotated[str, typer.Option(help="The staff member's id, as in the roster")],
    ttl: Annotated[int, typer.Option(help="Seconds the link stays valid")] = 600,
) -> None:
    """Print a sign-in link to the review page for one staff member (local use).

    It signs what the platform would: a short-lived token under the school's review
    secret, with the staff member's role and groups from the roster."""
    from urllib.parse import urlsplit

    from moderation.review.tokens import sign_review_token
    from moderation.storage.db import session_scope
    from moderation.storage.review import get_staff
    from moderation.storage.schools import get_school

    settings = get_settings()
    try:
        with session_scope(settings.database_url) as session:
            secret = get_school(session=session, school_id=school).review_secret
            staff = get_staff(session=session, school_id=school, staff_id=user)
            token = sign_review_token(
                secret=secret,
                school_id=school,
                staff_id=staff.external_id,
                role=staff.role,
                groups=[g.external_id for g in staff.groups],
                name=staff.name,
                ttl_s=max(1, min(ttl, settings.review_token_max_ttl_s)),
            )
    except ModerationError as exc:
        _fail(exc.message)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = (settings.review_base_url or f"http://{host}:{settings.port}").rstrip("/")
    typer.echo(f"{base}/review/login?token={token}")
    loopback = urlsplit(base).hostname in ("127.0.0.1", "localhost", "::1")
    if base.startswith("http://") and not loopback and settings.review_cookie_secure:
        typer.echo(
            "note: browsers refuse the Secure session cookie over plain http except on "
            "localhost; set MODERATION_REVIEW_COOKIE_SECURE=false for such a test set-up",
            err=True,
        )


@admin.command("audit-export")
def audit_export(
    school: Annotated[str, typer.Option(help="The school's id")],
    start: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option("--to", help="Last day (included), YYYY-MM-DD")],
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout")] = None,
) -> None:
    """Export the school's audit trail for a period as CSV (for the privacy officer)."""
    from moderation.storage.audit import csv_lines, iter_audit, parse_period
    from moderation.storage.db import session_scope
    from moderation.storage.schools import get_school

    settings = get_settings()
    try:
        lo, hi = parse_period(start, end)
        with session_scope(settings.database_url) as session:
            get_school(session=session, school_id=school)
            rows = iter_audit(session=session, school_id=school, start=lo, end=hi)
            if out is None:
                for line in csv_lines(rows):
                    sys.stdout.write(line)
            else:
                with out.open("w", encoding="utf-8", newline="") as handle:
                    count = -1  # the header
                    for line in csv_lines(rows):
                        handle.write(line)
                        count += 1
                typer.echo(f"wrote {count} audit events to {out}", err=True)
    except ModerationError as exc:
        _fail(exc.message)
    except OSError as exc:
        _fail(str(exc))


class _TrainOptions(TypedDict, total=False):
    """The options of ``train-text`` that, left out, take the trainer's defaults."""

    epochs: int
    max_benign_fpr: float
    lora_rank: int
    lr: float
    seed: int


@app.command("train-text")
def train_text(
    epochs: Annotated[
        int | None,
        typer.Option(help="Passes over the training split; left out: the trainer's default"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the weights go")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N examples")] = None,
    adapters: Annotated[
        bool, typer.Option(help="Fine-tune LoRA adapters (slow); --no-adapters: head only")
    ] = True,
    max_benign_fpr: Annotated[
        float | None,
        typer.Option(
            help="Operating point: share of benign dev posts allowed to be flagged; "
            "left out: the trainer's default"
        ),
    ] = None,
    lora_rank: Annotated[
        int | None, typer.Option(help="Rank of the LoRA adapters; left out: the trainer's default")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Peak learning rate of the adapters; left out: the trainer's default"),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the adapters' and head's start and the batch order"),
    ] = None,
) -> None:
    """Train the text classifier's adapters, head and calibration (progress per epoch).

    Options left out take the defaults of ``models.text.train.train``."""
    from models.text.classifier import CATEGORIES, DEFAULT_WEIGHTS_DIR
    from models.text.train import train
    from moderation.policy import DEFAULT_POLICY

    thresholds = DEFAULT_POLICY.thresholds()
    given: _TrainOptions = {}
    if epochs is not None:
        given["epochs"] = epochs
    if max_benign_fpr is not None:
        given["max_benign_fpr"] = max_benign_fpr
    if lora_rank is not None:
        given["lora_rank"] = lora_rank
    if lr is not None:
        given["lr"] = lr
    if seed is not None:
        given["seed"] = seed
    report = train(
        thresholds=[thresholds[c] for c in CATEGORIES],
        out_dir=out or DEFAULT_WEIGHTS_DIR,
        limit=limit,
        adapters=adapters,
        progress=lambda m: typer.echo(m, err=True),
        **given,
    )
    typer.echo(f"dev macro-F1 {report['dev_macro_f1']:.3f}; weights sha256 {report['sha256']}")


@app.command("average-text")
def average_text(
    runs: Annotated[list[Path], typer.Argument(help="Weights directories of trained runs")],
    out: Annotated[Path | None, typer.Option(help="Where the averaged weights go")] = None,
    max_benign_fpr: Annotated[
        float, typer.Option(help="Operating point: share of benign dev posts allowed to be flagged")
    ] = 0.02,
) -> None:
    """Average the weights of trained runs into one model and calibrate it on dev.

    The runs' adapters average exactly into one adapter of their summed rank (merged into
    the encoder at inference, so no slower); see ``models/text/average.py``."""
    from models.text.average import average_runs
    from models.text.classifier import CATEGORIES, DEFAULT_WEIGHTS_DIR, WeightsError
    from moderation.policy import DEFAULT_POLICY

    thresholds = DEFAULT_POLICY.thresholds()
    try:
        report = average_runs(
            runs,
            thresholds=[thresholds[c] for c in CATEGORIES],
            max_benign_fpr=max_benign_fpr,
            out_dir=out or DEFAULT_WEIGHTS_DIR,
            progress=lambda m: typer.echo(m, err=True),
        )
    except (WeightsError, ValueError, OSError) as exc:
        _fail(str(exc))
    point = report["operating_point"]
    typer.echo(
        f"dev macro-F1 {point['dev_macro_f1']:.3f} at benign FPR {point['dev_benign_fpr']:.3f}; "
        f"weights sha256 {report['sha256']}"
    )


@app.command("eval")
def eval_text(
    data: Annotated[Path, typer.Option(help="Labelled posts, one JSON object a line")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Measure the configured text scorer at the service's own thresholds."""
    import json as json_

    from models.text.evaluate import evaluate, format_report, read_labelled
    from moderation.policy import DEFAULT_POLICY
    from workers.scorers import text_scorer

    try:
        rows = read_labelled(data)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    result = evaluate(text_scorer(get_settings()), rows, DEFAULT_POLICY.thresholds())
    typer.echo(json_.dumps(result, indent=2) if as_json else format_report(result))


bench_app = typer.Typer(help="Benchmarks, each beside a reference run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("text")
def bench_text(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
    posts: Annotated[int, typer.Option(min=1, help="Posts for the batched run")] = 512,
    single: Annotated[int, typer.Option(min=1, help="Posts scored one by one")] = 100,
    rounds: Annotated[
        int, typer.Option(min=1, help="Alternating rounds of ours and the reference")
    ] = 3,
    plot: Annotated[
        Path | None, typer.Option(help="Latency histogram (PNG; needs matplotlib, dev extra)")
    ] = None,
) -> None:
    """Posts/s and single-post latency of the service's text scorer (the configured
    backend) beside an XLM-R-base reference, in the same process."""
    import json as json_

    from models.text.bench import run_benchmark
    from models.text.encoder import build_encoder
    from workers.scorers import text_scorer

    settings = get_settings()
    typer.echo(f"loading the text scorer ({settings.text_scorer}) ...", err=True)
    scorer = text_scorer(settings)
    result = run_benchmark(
        scorer,
        tokenizer_path=str(build_encoder()),
        posts=posts,
        single=single,
        rounds=rounds,
        backend=settings.text_backend if settings.text_scorer == "model" else None,
        plot=plot,
        progress=lambda m: typer.echo(m, err=True),
    )
    if plot is not None and "plot" not in result:
        typer.echo("no histogram: matplotlib is not installed (pip install -e '.[dev]')", err=True)
    if as_json:
        typer.echo(json_.dumps(result))
        return
    backend = f", {result['backend']}" if result["backend"] else ""
    typer.echo(
        f"ours ({result['scorer']}{backend}): {result['posts_per_s']} posts/s batched, "
        f"single post p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms\n"
        f"reference (XLM-R-base, transformers pipeline): {result['reference_posts_per_s']} "
        f"posts/s, p50 {result['reference_p50_ms']} ms, p95 {result['reference_p95_ms']} ms\n"
        f"speedup: {result['speedup']}x (per round: {result['speedup_per_round']}; "
        f"{result['threads']} threads, same process, "
        f"load {result['load_1m']})"
        + (f"\nhistogram: {result['plot']}" if "plot" in result else "")
    )


@bench_app.command("images")
def bench_images(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
    photos: Annotated[int, typer.Option(min=1, help="Composed class photos")] = 20,
) -> None:
    """Photos/s of the whole image pipeline (sanitise, faces, nudity, hashes, blur) beside a
    face_recognition-style reference, with face recall on class photos."""
    import json as json_

    from models.images.bench import format_table, run_benchmark

    try:
        result = run_benchmark(photos, progress=lambda m: typer.echo(m, err=True))
    except (FileNotFoundError, RuntimeError) as exc:  # test photos or scikit-image missing
        _fail(str(exc))
    typer.echo(json_.dumps(result) if as_json else format_table(result))


@bench_app.command("e2e")
def bench_e2e(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
    rate: Annotated[float, typer.Option(help="Posts submitted per second")] = 50.0,
    seconds: Annotated[float, typer.Option(help="How long posts are submitted")] = 30.0,
    workers: Annotated[int, typer.Option(help="Worker processes (each takes every queue)")] = 1,
    pool: Annotated[str, typer.Option(help="Worker pool: threads, solo or prefork")] = "threads",
    concurrency: Annotated[int, typer.Option(help="Tasks at once per worker process")] = 8,
    mix: Annotated[
        str, typer.Option(help="realistic (70% text, 25% a photo, 5% several) or text")
    ] = "realistic",
    text_scorer: Annotated[
        str, typer.Option(help="model, lexicon (the plumbing alone) or fake")
    ] = "model",
    embedded: Annotated[bool, typer.Option(help="SQLite and the SQLite broker")] = False,
    database_url: Annotated[
        str | None,
        typer.Option(help="Default: a fresh PostgreSQL database on 127.0.0.1:5432, dropped after"),
    ] = None,
    broker_url: Annotated[
        str | None, typer.Option(help="Default: Redis 127.0.0.1:6379 database 14, flushed")
    ] = None,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for decisions after the last post")
    ] = 120.0,
    out: Annotated[
        Path, typer.Option(help="Logs, result.json and the latency histogram go here")
    ] = Path("var/bench"),
    profile: Annotated[
        bool, typer.Option(help="py-spy profiles of the API and workers (collapsed stacks)")
    ] = False,
) -> None:
    """The real API and workers under a fixed load: posts/s, decision latency, lost and
    duplicated posts (``moderation.bench_e2e``)."""
    import json as json_

    from moderation.bench_e2e import BenchOptions, format_summary, run_bench
    from moderation.bench_material import MIXES

    if mix not in MIXES:
        _fail(f"unknown mix {mix!r}; choose from {', '.join(MIXES)}")
    if text_scorer not in ("model", "lexicon", "fake"):
        _fail(f"unknown text scorer {text_scorer!r}; choose model, lexicon or fake")
    try:
        options = BenchOptions(
            rate=rate,
            seconds=seconds,
            workers=workers,
            pool=pool,
            concurrency=concurrency,
            mix=mix,  # type: ignore[arg-type]  # checked above
            text_scorer=text_scorer,
            embedded=embedded,
            database_url=database_url,
            broker_url=broker_url,
            drain_timeout_s=drain_timeout,
            out_dir=out,
            log_level=get_settings().log_level,
            profile=profile,
        )
    except ValueError as exc:
        _fail(str(exc))
    result = run_bench(options, progress=lambda m: typer.echo(m, err=True))
    typer.echo(json_.dumps(result.summary) if as_json else format_summary(result.summary))
    if result.summary["lost"] or result.summary["duplicated"]:
        raise typer.Exit(1)


def main() -> None:
    logging.basicConfig(
        level=get_settings().log_level, format="%(levelname)s %(name)s: %(message)s"
    )
    app()


if __name__ == "__main__":
    main()
