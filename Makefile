# qtchat: `make run` starts the app, `make test` runs the whole suite.
# Both create .venv on first use (no other installs by hand).

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run serve test lint bench bench-gui bench-bundle dist icons screenshots clean

$(STAMP): pyproject.toml
	@test -x $(PY) || { PYBIN=$$(sh .ci/pick-python) && echo "qtchat: creating $(VENV) with $$PYBIN" && $$PYBIN -m venv $(VENV); }
	@echo "qtchat: installing dependencies into $(VENV) (the first time takes a minute or two)"
	@$(PY) -m pip install --quiet --upgrade pip > $(VENV)/pip.log 2>&1 \
		&& $(PY) -m pip install --quiet -e '.[dev,dist]' >> $(VENV)/pip.log 2>&1 \
		|| { cat $(VENV)/pip.log; echo "qtchat: installing dependencies failed (log above)"; exit 1; }
	@touch $(STAMP)

# The desktop app. Without a display it runs the headless server instead and says how to join.
run: $(STAMP)
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY$$QT_QPA_PLATFORM" ]; then \
		$(VENV)/bin/qtchat; \
	else \
		echo "qtchat: no display here (DISPLAY/WAYLAND_DISPLAY unset), so running the headless server."; \
		echo "qtchat: join it from another machine's app with that machine's address and the port below."; \
		$(VENV)/bin/qtchat serve; \
	fi

serve: $(STAMP)
	$(VENV)/bin/qtchat serve

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check qtchat tests benchmarks resources docs qtchat.spec

bench: $(STAMP)
	$(PY) benchmarks/loadgen.py --all --reference

bench-gui: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) benchmarks/gui_bench.py

bench-bundle: $(STAMP)
	$(PY) benchmarks/bundle_bench.py --check

icons: $(STAMP)
	$(PY) resources/make_icons.py

dist: $(STAMP)
	$(PY) -m PyInstaller --noconfirm --clean qtchat.spec

screenshots: $(STAMP)
	$(PY) docs/make_screenshots.py

clean:
	rm -rf build dist .pytest_cache .ruff_cache
