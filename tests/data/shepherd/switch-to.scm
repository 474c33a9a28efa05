;; Test fixture: the generation a live switch goes to, loaded with
;; `herd load root' over switch-from.scm: `changed' runs another command,
;; `added' is new, `removed' is gone; the others are as they were.
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
           #:start (make-forkexec-constructor '("/bin/sleep" "2001"))
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
  (service '(added)
           #:requirement '()
           #:start (make-forkexec-constructor '("/bin/sleep" "2005"))
           #:stop (make-kill-destructor)
           #:respawn? #t)))

(start-in-the-background '(kept changed dependent paused added))
