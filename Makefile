# legkit: the two commands a new user needs.
#   make train   set up .venv (if missing) and train the default Go2 walking policy
#   make test    set up .venv (if missing) and run the test suite
# Both also install the Debian packages that videos (and the tests) need, when run as root.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.legkit-installed

# System packages, Debian/Ubuntu: installed when missing and running as root (otherwise listed).
#   GL_PKGS    headless OpenGL for videos (Mesa's EGL, and OSMesa as the fallback)
#   TEST_PKGS  Chromium (the report test opens the HTML), Xvfb (the viewer test), a font, PostgreSQL (the
#              `legkit tune` test starts a server of its own)
GL_PKGS   := libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6
TEST_PKGS := chromium xvfb xauth fonts-dejavu-core postgresql

# $(call apt_install,PACKAGES): quiet when everything is there; one apt-get update before installing.
define apt_install
	@command -v dpkg >/dev/null 2>&1 || exit 0; \
	missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "note: missing system packages:$$missing (as root: apt-get install$$missing)"; exit 0; fi; \
	echo "installing system packages:$$missing"; \
	apt-get update -qq >/dev/null && \
	DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends $$missing >/dev/null
endef

.PHONY: setup system-deps test-system-deps train test clean

setup: $(STAMP) system-deps

system-deps:
	$(call apt_install,$(GL_PKGS))

test-system-deps:
	$(call apt_install,$(GL_PKGS) $(TEST_PKGS))

# torch is installed first and on its own, pinned, so that pip takes the CPU build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP) system-deps
	$(BIN)/legkit train go2-walk $(ARGS)

test: $(STAMP) test-system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
