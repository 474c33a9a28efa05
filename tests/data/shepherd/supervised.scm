;; Test fixture in the shape fruixops generates (see fruixops/system/build.py):
;; `app' is listed first but requires `base', which must start before it.
;; @DIR@ is the test's temporary directory.
(use-modules (shepherd service))

(register-services
 (list
  (service '(app)
           #:documentation "an application"
           #:requirement '(base)
           #:start (make-forkexec-constructor '("/bin/sleep" "1000")
                                              #:user "nobody" #:group "nogroup")
           #:stop (make-kill-destructor)
           #:respawn? #t
           #:respawn-limit '(3 . 10))
  (service '(base)
           #:documentation "what app needs"
           #:requirement '()
           #:start (make-forkexec-constructor
                    '("/bin/sh" "-c" "echo base says hello; exec sleep 1000")
                    #:log-file "@DIR@/log/base.log")
           #:stop (make-kill-destructor)
           #:respawn? #t)))

(start-in-the-background '(app base))
