# The one way in: make install | format | lint | typecheck | test | all
.PHONY: install format lint typecheck test all

install:
	uv sync --locked

format:
	uv run ruff format src tests bench scripts
	uv run ruff check --fix src tests bench scripts
	uv run python scripts/unasync.py

lint:
	uv run ruff check src tests bench scripts
	uv run ruff format --check src tests bench scripts
	uv run lint-imports --no-cache
	uv run python scripts/unasync.py --check
	uv run python scripts/mcp_manifest.py --check
	uv run python scripts/cli_help.py --check
	@! grep -rnE 'sleep\((0\.[0-9]*[1-9]|[1-9])' tests --include='*.py' | grep -v 'sleep-ok' \
		|| (echo 'tests must not sleep to synchronise (add "# sleep-ok: <reason>" if polling another process)'; exit 1)

typecheck:
	uv run mypy src

test:
	uv run pytest --cov
	uv run coverage report --include='src/outrider/_core/*' --fail-under=100 --skip-covered

all: lint typecheck test
