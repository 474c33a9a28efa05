;; Test fixture: a configuration that reads but does not evaluate (a typo).
(use-modules (shepherd service))

(register-services
 (list
  (service '(steady)
           #:start (make-forkexec-constructor '("/bin/sleep" "1000"))
           #:respawn? #t)))

(start-in-the-backgroud '(steady))
