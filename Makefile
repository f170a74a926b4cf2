# The README's two commands. Everything they install goes to .host/ (or uses COMFYUI_DIR).
.PHONY: run test bench lint report

run:   ## start ComfyUI with the pack on 127.0.0.1:8188 (installs on first run)
	@bash tools/host.sh run

test:  ## install host + test tools, then run every test (unit, integration, browser)
	@bash tools/host.sh test $(ARGS)

report: ## run the reliability suite (tests/reliability) and print its table: leaks, faults, bad inputs, paid calls
	@python3 tools/reliability_report.py $(ARGS)

bench: ## run the benchmarks and print their ratios
	@bash tools/host.sh bench $(ARGS)

lint:  ## layout rules and ruff
	@bash tools/host.sh test -q tests/unit/test_code_rules.py
