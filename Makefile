# Two commands do all the set-up on a fresh Debian machine (as root):
#   make demo   bring up the lab and run the Fruix phase 15.2 story on web1
#   make test   run the whole test suite against the lab
VENV    ?= .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed-stamp

.PHONY: demo test faults bench lint sysdeps venv clean lab-down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

venv: $(STAMP)

sysdeps:
	@sh scripts/system-deps

demo: venv sysdeps
	$(VENV)/bin/inv lab.up
	$(VENV)/bin/inv demo

test: venv sysdeps
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# The long fault campaign: 100 controller kills instead of make test's 20,
# and as many more receiver kills (deploys, pulls, gc, trust, switches) and
# power cuts.
faults: venv sysdeps
	FRUIXOPS_FAULT_TRIALS=$${FRUIXOPS_FAULT_TRIALS:-100} $(VENV)/bin/python -m pytest -q -s -o timeout=3600 \
		tests/test_faults_lab.py tests/test_powercut_lab.py \
		tests/test_hardening_lab.py::test_receivers_killed_at_random_points_leave_the_host_whole \
		tests/test_boot_lab.py::test_receiver_killed_at_random_points_of_a_switch \
		tests/test_cache_lab.py::test_receivers_killed_at_random_points_of_a_pull_leave_the_host_whole

# Performance against OpenSSH tar|ssh on the lab (not part of make test).
bench: venv sysdeps
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

lint: venv sysdeps
	$(VENV)/bin/python -c 'from fruixops.remote import receiver; import sys; sys.stdout.buffer.write(receiver.source())' >.receiver.lint
	shellcheck -s sh .receiver.lint fruixops/host/*.sh fruixops/lab/*.sh fruixops/lab/sbin/kenv fruixops/lab/sbin/sysctl fruixops/lab/sbin/shutdown fruixops/lab/sbin/mount fruixops/lab/sbin/fsck fruixops/lab/sbin/swapon fruixops/lab/sbin/hostname fruixops/lab/sbin/ifconfig fruixops/lab/sbin/route fruixops/lab/sbin/syslogd fruixops/lab/sbin/pwd_mkdb fruixops/lab/sbin/lockf fruixops/lab/sbin/nginx fruixops/lab/freebsd/* fruixops/lab/etc/rc fruixops/lab/etc/defaults/rc.conf scripts/system-deps scripts/guile-lint; status=$$?; rm -f .receiver.lint; exit $$status
	sh scripts/guile-lint fruixops/lab/guile/shepherd/service.scm fruixops/lab/sbin/shepherd fruixops/lab/sbin/herd
	$(VENV)/bin/python -m pyflakes fruixops tests bench tasks.py

lab-down: venv
	$(VENV)/bin/inv lab.down

clean:
	-$(VENV)/bin/inv lab.down
	rm -rf $(VENV) .frx .lab
