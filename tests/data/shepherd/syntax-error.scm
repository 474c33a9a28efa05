;; Test fixture: a configuration the reader rejects (a missing parenthesis).
(use-modules (shepherd service))

(register-services
 (list
  (service '(steady)
           #:start (make-forkexec-constructor '("/bin/sleep" "1000"))
           #:respawn? #t))

(start-in-the-background '(steady)
