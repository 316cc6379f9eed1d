# The builder node's own smoke checks, run as root in the booted image after the common ones (lib/bootCheck.ts):
# its services and tools are up, not just installed.
set -eu
systemctl is-active --quiet nginx || { systemctl status nginx --no-pager; exit 1; }
# The artifact service answers on its port over the store layout (FR-9/10).
code=$(python3 -c '
import urllib.error, urllib.request
try:
    print(urllib.request.urlopen("http://127.0.0.1:8089/", timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception as e:
    print(e)')
case "$code" in 200|403|404) ;; *) echo "artifact service on :8089 answered '$code'"; exit 1 ;; esac
. /etc/profile.d/image-factory.sh
for t in pulumi oras packer node; do command -v "$t" >/dev/null || { echo "$t is not on the login PATH"; exit 1; }; done
pulumi version
test -d /srv/image-factory/work && test -d /srv/artifacts
echo "builder node: nginx active, artifact service on :8089 answers $code, tools on PATH"
