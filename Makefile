# refhub: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 5000
# The demo's texts carry links to the address served, unless HUB_PUBLIC_BASE_URL says otherwise.
PUBLIC ?= $(or $(HUB_PUBLIC_BASE_URL),http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT))

.PHONY: run test bench clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	HUB_PUBLIC_BASE_URL=$(PUBLIC) $(BIN)/hub init --demo
	HUB_PUBLIC_BASE_URL=$(PUBLIC) $(BIN)/hub serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache
