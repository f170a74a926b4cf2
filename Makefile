# The README's two commands. Everything they install goes to .host/ (or uses COMFYUI_DIR).
# HOSTS picks the ComfyUI: `make test` runs the whole suite on 0.3.75 and on 0.33.0 and fails if either fails;
# `make test HOSTS=0.33.0` (or HOSTS=/path/ComfyUI-src.tar.gz, HOSTS=/path/to/ComfyUI) tests one while developing.
# `make run` and `make bench` use 0.3.75 unless HOSTS names another.
.PHONY: run test bench lint report

run:   ## start ComfyUI with the pack on 127.0.0.1:8188 (installs on first run); ARGS="--listen <address>" for a phone
	@bash tools/host.sh run $(ARGS)

test:  ## install the hosts + test tools, then run every test (unit, integration, browser) on each host
	@bash tools/host.sh test $(ARGS)

report: ## run the reliability suite (tests/reliability) and print its table: leaks, faults, bad inputs, paid calls
	@python3 tools/reliability_report.py $(ARGS)

bench: ## run the benchmarks and print their ratios
	@bash tools/host.sh bench $(ARGS)

lint:  ## layout rules and ruff
	@HOSTS="$${HOSTS:-0.3.75}" bash tools/host.sh test -q tests/unit/test_code_rules.py
