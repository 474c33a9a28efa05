;; Test fixture: the generation a live switch starts from (switch-to.scm is
;; the one it goes to), in the shape fruixops generates.
;;   kept:       the same in both;
;;   changed:    its command line changes;
;;   dependent:  the same in both, but requires `changed';
;;   paused:     the same in both, stopped by hand before the switch;
;;   removed:    left out of the next generation.
(use-modules (shepherd service))

(register-services
 (list
  (service '(kept)
           #:requirement '()
           #:start (make-forkexec-constructor '("/bin/sleep" "1000"))
           #:stop (make-kill-destructor)
           #:respawn? #t)
  (service '(changed)
           #:requirement '()
           #:start (make-forkexec-constructor '("/bin/sleep" "1001"))
           #:stop (make-kill-destructor)
           #:respawn? #t)
  (service '(dependent)
           #:requirement '(changed)
           #:start (make-forkexec-constructor '("/bin/sleep" "1002"))
           #:stop (make-kill-destructor)
           #:respawn? #t)
  (service '(paused)
           #:requirement '()
           #:start (make-forkexec-constructor '("/bin/sleep" "1003"))
           #:stop (make-kill-destructor)
           #:respawn? #t)
  (service '(removed)
           #:requirement '()
           #:start (make-forkexec-constructor '("/bin/sleep" "1004"))
           #:stop (make-kill-destructor)
           #:respawn? #t)))

(start-in-the-background '(kept changed dependent paused removed))
