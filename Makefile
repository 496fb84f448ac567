# refhub: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 5000
# The demo's texts carry links to the address served, unless HUB_PUBLIC_BASE_URL says otherwise.
PUBLIC ?= $(or $(HUB_PUBLIC_BASE_URL),http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT))

.PHONY: run test bench clean install messages screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pybabel -q compile -d hub/translations
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	HUB_PUBLIC_BASE_URL=$(PUBLIC) $(BIN)/hub init --demo
	HUB_PUBLIC_BASE_URL=$(PUBLIC) $(BIN)/hub serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# The web's strings: extract them, merge them into the English and Khmer catalogues, compile.
# New strings arrive in hub/translations/km/LC_MESSAGES/messages.po with an empty msgstr to translate.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o hub/translations/messages.pot .
	$(BIN)/pybabel update -i hub/translations/messages.pot -d hub/translations --no-fuzzy-matching --width 120
	$(BIN)/pybabel compile -d hub/translations

# Screenshots of the main pages in English and Khmer at phone size, for the README.
screenshots: $(STAMP)
	HUB_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/e2e -k journey -p no:cacheprovider

clean:
	rm -rf $(VENV) instance .pytest_cache
