"""The Fruix phase 15.2 story on one host, end to end, in the report's own
terms: boot current -> boot candidate -> boot current again, checking after
each boot which generation and closure the loader booted (the host's
``kenv``) and that it is healthy.

Used by ``inv demo`` (``make demo``) and by the end-to-end test.
"""

from fruixops.rollout import boot, checks
from fruixops.rollout import deploy as deploy_mod
from fruixops.rollout.deploy import connect

CURRENT, CANDIDATE = "stable-default", "stable-canary"


def _closure_digest(hc, closure):
    """One sha256 over every file of a closure item tree (path and content),
    taken on the host, to show the current closure is never mutated."""
    cmd = (f"cd {closure} && find . -type f | LC_ALL=C sort | "
           "while read -r f; do printf '%s ' \"$f\"; openssl dgst -sha256 -r \"$f\"; done | "
           "openssl dgst -sha256 -r | cut -c1-64")
    return hc.check(cmd).out.strip()


def run(ctl, host_name, out=print):
    ok = True

    def say(key, value):
        out(f"{key}={value}")

    def verdict(key, good):
        nonlocal ok
        ok = ok and bool(good)
        say(key, "ok" if good else "FAILED")

    def after_boot(prefix, expected, generation):
        hc = connect(ctl, ctl.inventory.host(host_name))
        try:
            state = boot.state(hc)
            say(f"{prefix}_booted_generation", state.booted_generation)
            verdict(f"{prefix}_booted_closure",
                    (state.booted_generation, state.booted) == (generation, expected))
            for name, good in checks.run(hc, generation).items():
                verdict(f"{prefix}_health_{name}", good)
        finally:
            hc.close()

    say("host", host_name)
    first = deploy_mod.deploy(ctl, host_name, CURRENT, reboot=True)
    say("current_closure", first.closure)
    say("current_base_version_label", first.version_label)
    after_boot("current", first.closure, first.generation)

    hc = connect(ctl, ctl.inventory.host(host_name))
    try:
        kernel_digest_before = _closure_digest(hc, first.closure)
    finally:
        hc.close()

    settings = ctl.inventory.settings.cache
    if settings and settings.upload:
        # The fleet's cache gets the candidate first: the host pulls what
        # it cannot link from its own store.
        from fruixops.rollout import cache
        host = ctl.inventory.host(host_name)
        uploaded = cache.push(ctl.builder.store, cache.closure_items(ctl, [host], CANDIDATE),
                              cache.target_for(settings, ctl.inventory.settings.known_hosts))
        say("candidate_cache_objects_uploaded", uploaded.uploaded)
    cand = deploy_mod.deploy(ctl, host_name, CANDIDATE, reboot=True)
    say("candidate_bytes_sent", cand.bytes_sent)
    say("candidate_bytes_fetched", cand.bytes_fetched)
    say("candidate_closure", cand.closure)
    say("candidate_base_version_label", cand.version_label)
    after_boot("candidate", cand.closure, cand.generation)
    hc = connect(ctl, ctl.inventory.host(host_name))
    try:
        both = hc.run(f"test -d {first.closure} && test -d {cand.closure}").status == 0
        unchanged = _closure_digest(hc, first.closure) == kernel_digest_before
    finally:
        hc.close()
    verdict("side_by_side_base_versions",
            both and first.closure != cand.closure and first.version_label != cand.version_label)
    verdict("current_closure_unchanged", unchanged)

    # Roll back, once with `rollback`...
    gen, state = deploy_mod.rollback(ctl, host_name, reboot=True)
    say("rollback_closure", state.current_closure)
    verdict("rollback_generation_boot", state.booted == first.closure)
    after_boot("rollback", first.closure, gen)

    # ...and once by deploying the earlier declaration again.
    deploy_mod.deploy(ctl, host_name, CANDIDATE, reboot=True)
    again = deploy_mod.deploy(ctl, host_name, CURRENT, reboot=True)
    verdict("redeploy_same_closure_path", again.closure == first.closure)
    verdict("redeploy_boot", again.booted == first.closure)
    after_boot("redeploy", first.closure, again.generation)

    verdict("base_rollforward_and_rollback", ok)
    return ok
