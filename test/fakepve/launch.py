"""A Proxmox VE API on loopback for the tests and the rehearsal: fakepve (PyPI, AGPL-3.0-or-later, a test-only
service installed by scripts/setup.sh into the ignored .tools/fakepve venv, never vendored or shipped) with an API
token, TLS and the few behaviours of real Proxmox VE that fakepve does not model but our code depends on.

    launch.py --host 127.0.0.1 --port 0 --ready-file F [--data-dir D] [--node pve1] [--zfs-storage local-zfs]
    env FAKEPVE_TOKEN="root@pam!ci=<secret>" (read from the environment: a secret never goes into argv)
    env FAKEPVE_EXTRA_TOKENS='[{"token": "u@pve!t=<secret>", "grants": [["/vms", ["VM.Audit"]]]}]' (optional)

    env FAKEPVE_IDENTITIES='[{"token": "factory@pve!ci=<secret>", "privsep": true, "grants": [[path, [priv…]]],
                              "userGrants": [[path, [priv…]]]}]' (optional: more users and their tokens)
    --pve-version 8.3|8.4|9.0  --import-storage local  --task-seconds 2  --fail-task qmcreate:"message"

Writes {"url", "port", "pid", "cert"} to the ready file once it listens. Extensions, each following the Proxmox VE
API viewer (pve-docs/api-viewer) and the code behind it (repository, file, function):
- users and API tokens with privilege separation (pve-access-control src/PVE/RPCEnvironment.pm permissions(),
  src/PVE/AccessControl.pm roles()): a token with privsep (the default) holds the intersection of its own ACL and
  its user's; without privsep, its user's. root@pam holds everything, a root@pam token with privsep only its own ACL.
  GET /access/permissions answers a token's effective privileges.
- the permission checks of the calls and parameters bpg's provider sends, with PVE's 403 text "Permission check
  failed (<path>, <privilege>)": VM create and config (qemu-server src/PVE/API2/Qemu.pm check_vm_modify_config_perm,
  $check_storage_access, $check_vm_create_serial_perm; src/PVE/QemuServer.pm check_bridge_access and pve-guest-common
  PVE/GuestHelpers.pm check_vnet_access: SDN.Use on /sdn/zones/localnetwork/<bridge>), `import-from`'s volume access
  (pve-storage src/PVE/Storage.pm check_volume_access), resize (Qemu.pm resize_vm: Datastore.AllocateSpace),
  download-url (pve-storage src/PVE/API2/Storage/Status.pm download_url) and query-url-metadata (pve-manager
  PVE/API2/Nodes.pm query_url_metadata): Datastore.AllocateTemplate on the storage (download only) and
  Sys.Audit + Sys.Modify on / or Sys.AccessNetwork on /nodes/<node>.
- storages with PVE's default content (`local`: iso,vztmpl,backup) unless --import-storage adds `import`; a node
  version (--pve-version): before PVE 8.4 (pve-storage 8.3.6) download-url's `content` has no `import` value and the
  schema check refuses it.
- tasks that run for a while (--task-seconds: the UPID comes back at once, the task stops later) and one that fails
  after running (--fail-task TYPE:MESSAGE, its exit status the message), as fork_worker's tasks do.
- download-url (POST /nodes/{node}/storage/{storage}/download-url) really GETs the URL, hashes what arrives and
  refuses the file when `checksum` + `checksum-algorithm` do not match, as PVE::Tools::download_file_from_url does
  ("checksum mismatch: got '…' != expect '…'"); the file is kept on disk with its real size, so a later import
  reads real bytes. fakepve only pretends a fixed-size file arrived.
- `import` content on the dir storage `local` (PVE 8.4+: disk images to import, extensions .qcow2/.raw/.vmdk).
- query-url-metadata (GET /nodes/{node}/query-url-metadata) answers from a real HEAD request that follows redirects
  (LWP), with the file name from Content-Disposition or the URL asked: filename, size, mimetype, as
  pve-manager PVE/API2/Nodes.pm query_url_metadata does; download-url follows redirects too (wget, in pve-common
  PVE/Tools.pm download_file_from_url).
- qemu create with `import-from=<volume>` on a disk: the source must exist (else "volume '…' does not exist"), and
  the new disk is the source converted by `qemu-img convert` into the target storage (a file per volume under the
  data dir, raw on LVM/ZFS storages, as qemu-server's import does with qemu-img), so a test can compare the template's
  disk with the published image (GET /_fake/volume?volid=… gives the file).
- qemu resize (PUT /nodes/{node}/qemu/{vmid}/resize): fakepve answers it from the schema without changing the
  disk; here it grows the volume as qemu-server does and refuses to shrink.
- destroying a template whose base volume a linked clone uses fails in its task with
  "base volume '…' is still in use by linked cloned" (qemu-server destroy_vm, volume_is_base_and_used).
- the cloud-init drive's volume is vm-<vmid>-cloudinit, as PVE names it (fakepve numbers it like a disk).
- GET /_fake/downloads, /_fake/requests and /_fake/volume (not part of PVE): what download-url fetched (url, bytes, sha256,
  result) and the requests received, for assertions.
"""

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile

import aiohttp
from aiohttp import web

from fakepve.certs import make_cert
from fakepve.lxc import format_size
from fakepve.model import PveError, TaskError
from fakepve.qemu import join_drive, split_drive
from fakepve.server import USER, FakePve, ok, params

IMPORT_EXTENSIONS = ('.qcow2', '.raw', '.vmdk', '.ova')
ALGORITHMS = ('md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512')
DRIVE_KEY = re.compile(r'(ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0')

# qemu-server src/PVE/API2/Qemu.pm: the option tables check_vm_modify_config_perm maps to a privilege.
CPU_OPTIONS = {'cores', 'cpu', 'runningcpu', 'cpulimit', 'cpuunits', 'numa', 'smp', 'sockets', 'vcpus'}
MEMORY_OPTIONS = {'memory', 'balloon', 'shares', 'allow-ksm'}
HWTYPE_OPTIONS = {'acpi', 'hotplug', 'kvm', 'machine', 'runningmachine', 'scsihw', 'smbios1', 'tablet', 'vga', 'watchdog',
                  'audio0', 'rng0'}
GENERAL_OPTIONS = {'agent', 'autostart', 'bios', 'description', 'keyboard', 'localtime', 'migrate_downtime', 'migrate_speed',
                   'name', 'onboot', 'ostype', 'protection', 'reboot', 'startdate', 'startup', 'tdf', 'template'}
DISK_OPTIONS = {'boot', 'bootdisk', 'vmstatestorage'}
CLOUDINIT_OPTIONS = {'cicustom', 'cipassword', 'citype', 'ciuser', 'ciupgrade', 'nameserver', 'searchdomain', 'sshkeys'}
# PVE releases and the pve-storage version each ships (pveversion -v): `import` content for download-url and
# import-from came with pve-storage 8.3.6, in PVE 8.4.
PVE_VERSIONS = {'8.3': ('8.3.5', False), '8.4': ('8.4.1', True), '9.0': ('9.0.10', True)}


class LabPve(FakePve):
    def __init__(self, data_dir, **kw):
        super().__init__(**kw)
        self.data_dir = data_dir
        self.downloads = []
        # PVE's default content of `local` (a fresh install): no `import` until the operator adds it (pvesm set).
        self.storages['local']['content'] = 'iso,vztmpl,backup'
        self.token_privsep = {}
        self.import_supported = True
        self.task_seconds = 0.0
        self.fail_tasks = {}
        self._creating = False

    # ------------------------------------------------------------------ identities, privilege separation

    def add_identity(self, tokenid, secret, grants, privsep=True, user_grants=None):
        """A user's API token with its ACL; a user other than root@pam gets `user_grants` (default: the same)."""
        self.apitokens[tokenid] = secret
        self.token_privsep[tokenid] = bool(privsep)
        userid = tokenid.split('!')[0]
        every = lambda privs: pve_privileges() if list(privs) == ['*'] else privs  # noqa: E731 ("*": every privilege)
        for path, privs in grants:
            self.grant(tokenid, path, *every(privs))
        if userid != 'root@pam':
            for path, privs in (grants if user_grants is None else user_grants):
                self.grant(userid, path, *every(privs))

    def _acl_holds(self, ident, path, priv):
        """The ACL of exactly this user or token holds `priv` on `path` (a grant propagates to sub-paths)."""
        paths = [path]
        if path.startswith('/vms/'):
            vmid = path.split('/')[2]
            paths += ['/pool/' + name for name, ids in self.pools.items() if vmid.isdigit() and int(vmid) in ids]
        for granted, privs in (self.acl or {}).get(ident, []):
            if priv in privs and (granted == '/' or any(p == granted or p.startswith(granted + '/') for p in paths)):
                return True
        return False

    def allowed(self, user, path, priv):
        """RPCEnvironment::permissions: root@pam holds all; a user its ACL; a privilege-separated token the
        intersection of its own ACL and its user's, one without privsep its user's. 'A|B': any of them; '': nothing
        to check here (a parameter whose check depends on its value, made by _check_values)."""
        if not priv:
            return True
        if '|' in priv:
            return any(self.allowed(user, path, p) for p in priv.split('|'))
        if self.acl is None:
            return super().allowed(user, path, priv)
        userid, _, token = user.partition('!')
        user_holds = userid == 'root@pam' or self._acl_holds(userid, path, priv)
        if not token:
            return user_holds
        if user not in self.apitokens:
            return False
        return user_holds and (not self.token_privsep.get(user, True) or self._acl_holds(user, path, priv))

    def check_permissions(self, user, perms, values, declared=None):
        # fakepve lets every root@pam token through; a privilege-separated one is checked like any user (PVE checks
        # the rule against the token's own privileges).
        if user is None or '!' not in user or not self.token_privsep.get(user, True) or self.acl is None:
            return super().check_permissions(user, perms, values, declared)
        if perms is not None and 'check' in perms:
            ok_, why = self._check(user, perms['check'], values, declared)
            if not ok_:
                raise PveError(403, 'Permission check failed ({0})'.format(why) if why else 'Permission check failed')
        elif perms is None or perms.get('user') not in ('all', 'world'):
            raise PveError(403, 'Permission check failed (user != root@pam)')

    async def _permissions(self, v, user):
        """GET /access/permissions: the caller's (or `userid`'s) effective privileges per ACL path (and on `path`)."""
        who = v.get('userid') or user
        everything = set(pve_privileges())
        paths = sorted({p for ident in (who, who.split('!')[0]) for p, _ in (self.acl or {}).get(ident, [])} | {'/'})
        if v.get('path') is not None:
            paths = sorted(set(p for p in paths if v['path'] == p or p == '/' or v['path'].startswith(p + '/')) | {v['path']})
        out = {}
        for path in paths:
            held = {priv for priv in everything if self.allowed(who, path, priv)}
            if held:
                out[path] = dict.fromkeys(sorted(held), 1)
        return out

    def _routes_access(self):
        return [('GET', '/access/permissions', self._permissions)]

    def file_path(self, storage, content, name):
        return os.path.join(self.data_dir, storage, content, name)

    # ------------------------------------------------------------------ VM config permissions, as qemu-server

    def _config_priv(self, key):
        """check_vm_modify_config_perm: the privilege an option needs. Drives are checked by check_storage_access at
        create (new volumes, cdrom, import-from) and by $check_drive_perms on update; serial, usb, hostpci and
        unused entries by value (_check_values); anything unlisted is root's."""
        if DRIVE_KEY.fullmatch(key) or key == 'cdrom':
            return '' if self._creating else 'VM.Config.Disk'
        if re.fullmatch(r'(unused|serial|usb|hostpci|virtiofs)\d+', key):
            return ''
        if key == 'tags':
            return 'VM.Config.Options'  # GuestHelpers::assert_tag_permissions
        if key in CPU_OPTIONS or re.fullmatch(r'numa\d+', key):
            return 'VM.Config.CPU'
        if key in MEMORY_OPTIONS:
            return 'VM.Config.Memory'
        if key in HWTYPE_OPTIONS:
            return 'VM.Config.HWType'
        if key in GENERAL_OPTIONS:
            return 'VM.Config.Options'
        if key == 'freeze':
            return 'VM.PowerMgmt'
        if key in DISK_OPTIONS:
            return 'VM.Config.Disk'
        if re.fullmatch(r'net\d+', key) or key == 'running-nets-host-mtu':
            return 'VM.Config.Network'
        if key in CLOUDINIT_OPTIONS or re.fullmatch(r'ipconfig\d+', key):
            return 'VM.Config.Cloudinit|VM.Config.Network'
        if key == 'vmstate':
            return 'VM.Config.Disk'
        return 'root'

    def _check_values(self, user, vmid, params):
        """The checks that depend on a value, before anything is made: a serial port (socket: VM.Config.HWType; a
        real device: root only, $check_vm_create_serial_perm), startup (Sys.Modify on /), a bridge (SDN.Use on
        /sdn/zones/localnetwork/<bridge>, check_bridge_access), a physical cdrom (Sys.Console on /) and import-from's
        source volume (check_volume_access)."""
        vm_path = '/vms/{0}'.format(vmid)
        for key, value in sorted(params.items()):
            value = str(value)
            if re.fullmatch(r'serial\d+', key) and user != 'root@pam':
                if value != 'socket':
                    raise PveError(500, "only root can set '{0}' config for real devices".format(key))
                self.require(user, vm_path, 'VM.Config.HWType')
            elif key == 'startup':
                self.require(user, '/', 'Sys.Modify')
            elif re.fullmatch(r'net\d+', key) and user != 'root@pam':
                bridge = re.search(r'(?:^|,)bridge=([^,]+)', value)
                if bridge:
                    tag = re.search(r'(?:^|,)tag=(\d+)', value)
                    self.require(user, '/sdn/zones/localnetwork/{0}{1}'.format(bridge.group(1), '/' + tag.group(1) if tag else ''), 'SDN.Use')
            elif DRIVE_KEY.fullmatch(key):
                volume, props = split_drive(value)
                if volume == 'cdrom' and props.get('media') == 'cdrom':
                    self.require(user, '/', 'Sys.Console')
                source = props.get('import-from')
                if source and user != 'root@pam':
                    sid = source.split(':', 1)[0] if ':' in source else None
                    if sid is None:
                        raise PveError(500, 'Only root can pass arbitrary filesystem paths.')
                    if not self.allowed(user, '/storage/' + sid, 'Datastore.Allocate'):
                        # an import, ISO or template volume: read access to its storage is enough
                        if not self.allowed(user, '/storage/' + sid, 'Datastore.AllocateSpace|Datastore.Audit'):
                            raise PveError(403, 'Permission check failed (/storage/{0}, Datastore.AllocateSpace|Datastore.Audit)'.format(sid))

    async def _qm_create(self, v, user):
        self._check_values(user, v.get('vmid'), v)
        self._creating = True
        try:
            return await super()._qm_create(v, user)
        finally:
            self._creating = False

    async def _apply_config(self, vm, user, p):
        self._check_values(user, vm.vmid, p)
        return await super()._apply_config(vm, user, p)

    # ------------------------------------------------------------------ tasks that take time (and one that fails)

    async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
        """fork_worker: the UPID comes back at once and the task runs on (--task-seconds); --fail-task makes the
        first task of a type fail after it ran, with the message as its exit status."""
        failure = self.fail_tasks.pop(ttype, None)
        seconds = self.task_seconds

        async def slow_body():
            if seconds:
                await self.pause(seconds)
            if failure is not None:
                raise TaskError(failure)
            return await body()
        return await super().task(node, ttype, tid, user, slow_body, vm=vm, lock=lock, log=log)

    # ------------------------------------------------------------------ download-url, really downloading

    def _require_network(self, user, node):
        """download-url and query-url-metadata reach the node's network: Sys.Audit + Sys.Modify on /, or the
        narrower Sys.AccessNetwork on /nodes/<node> (pve-storage Status.pm download_url, pve-manager Nodes.pm
        query_url_metadata). PVE names no privilege when neither alternative holds."""
        if self.allowed(user, '/', 'Sys.Audit') and self.allowed(user, '/', 'Sys.Modify'):
            return
        if self.allowed(user, '/nodes/{0}'.format(node), 'Sys.AccessNetwork'):
            return
        raise PveError(403, 'Permission check failed')

    async def _download_url(self, request):
        name, store = self._file_storage(request, 'download')
        user = request[USER]
        self.require(user, '/storage/' + name, 'Datastore.AllocateTemplate')
        self._require_network(user, request.match_info['node'])
        raw = await params(request)
        if raw.get('content') == 'import' and not self.import_supported:
            # pve-storage before 8.3.6: the parameter's enum is iso, vztmpl.
            raise PveError(400, 'Parameter verification failed.', {'content': "value 'import' does not have a value in the enumeration 'iso, vztmpl'"})
        p = self._verify(request, raw)
        self._need_file_storage(store, "can't upload to storage type '{0}', not a file based storage!")
        content, filename, url = p['content'], p['filename'], p['url']
        if content not in re.split(r'[\s,;]+', store.get('content', '')):
            raise PveError(500, "storage '{0}' is not configured for content-type '{1}'".format(name, content))
        if content == 'import' and not filename.endswith(IMPORT_EXTENSIONS):
            raise PveError(400, 'Parameter verification failed.', {'filename': 'invalid filename or wrong extension'})
        if '/' in filename or filename.startswith('.'):
            raise PveError(400, 'Parameter verification failed.', {'filename': 'invalid filename'})
        final = self.file_path(name, content, filename)
        if os.path.exists(final) and '{0}/{1}'.format(content, filename) not in store.get('volumes', {}):
            # "Delete volume" (DELETE .../storage/{storage}/content/{volume}) removes the file on PVE; fakepve's
            # handler forgets only its record, so bytes it forgot are stale here and go.
            os.unlink(final)
        if os.path.exists(final):
            raise PveError(500, "refusing to override existing file '{0}'".format(final))
        algorithm, expected = p.get('checksum-algorithm'), p.get('checksum')
        if bool(algorithm) != bool(expected):
            raise PveError(400, 'Parameter verification failed.', {'checksum': "'checksum-algorithm' and 'checksum' must be given together"})
        verify = str(p.get('verify-certificates', 1)) not in ('0', 'false')
        record = {'url': url, 'storage': name, 'content': content, 'filename': filename, 'bytes': 0, 'sha256': None, 'result': 'running'}
        self.downloads.append(record)

        # PVE::Tools::download_file_from_url runs wget, which follows redirects (a GitHub release asset answers 302).
        async def body():
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = final + '.tmp_dwnl.{0}'.format(os.getpid())
            digest = hashlib.new(algorithm) if algorithm else None
            sha256 = hashlib.sha256()
            try:
                timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.get(url, ssl=None if verify else False) as res:
                        if res.status != 200:
                            raise TaskError('download failed: {0} {1}'.format(res.status, res.reason))
                        with open(tmp, 'wb') as out:
                            async for chunk in res.content.iter_chunked(1 << 20):
                                out.write(chunk)
                                sha256.update(chunk)
                                if digest:
                                    digest.update(chunk)
                                record['bytes'] += len(chunk)
                record['sha256'] = sha256.hexdigest()
                if digest:
                    got = digest.hexdigest()
                    if got != expected.lower():
                        raise TaskError("checksum mismatch: got '{0}' != expect '{1}'".format(got, expected))
                self.store_file(name, filename, record['bytes'], content)
                os.replace(tmp, final)
                record['result'] = 'OK'
            except aiohttp.ClientError as e:
                record['result'] = 'download failed: {0}'.format(e)
                raise TaskError(record['result']) from None
            except TaskError as e:
                record['result'] = str(e)
                raise
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return ok(await self.task(request.match_info['node'], 'download', name, user, body,
                                  log=['downloading {0} to {1}'.format(url, final)]))

    async def _fake_downloads(self, request):
        return web.json_response({'data': self.downloads})

    async def _fake_volume(self, request):
        """Where a volume's bytes are (an imported disk, after the template renamed it too)."""
        volid = request.query.get('volid', '')
        sid, _, name = volid.partition(':')
        vol = self.storages.get(sid, {}).get('volumes', {}).get(name)
        if vol is None:
            return web.json_response({'errors': {'volid': 'no such volume'}}, status=404)
        return web.json_response({'data': {'file': vol.get('file'), 'format': vol.get('format'), 'size': vol.get('size')}})

    async def _fake_requests(self, request):
        return web.json_response({'data': [list(r[:2]) + [r[2].decode(errors='replace') if isinstance(r[2], bytes) else r[2]] for r in self.requests]})

    def _build_app(self):
        app = super()._build_app()
        # Not PVE: a test hook outside /api2 (the middleware still asks for the token).
        app.router.add_get('/_fake/downloads', self._fake_downloads)
        app.router.add_get('/_fake/requests', self._fake_requests)
        app.router.add_get('/_fake/volume', self._fake_volume)
        return app

    # ------------------------------------------------------------------ query-url-metadata, with a real HEAD

    def _routes_labpve(self):
        return [('GET', '/nodes/{node}/query-url-metadata', self._query_url_metadata),
                ('PUT', '/nodes/{node}/qemu/{vmid}/resize', self._qm_resize)]

    # ------------------------------------------------------------------ qemu resize (fakepve has only lxc's)

    async def _qm_resize(self, v, user):
        """qemu-server's resize_vm: `size` is +N to grow by N or N to grow to N (K/M/G/T suffix, else bytes);
        shrinking is refused; the volume and the drive's size= follow. Asynchronous since PVE 8: returns a UPID."""
        vm = self.find(v['node'], v['vmid'])
        key, text = v['disk'], str(v['size'])
        m = re.fullmatch(r'(\+)?(\d+(?:\.\d+)?)([KMGT])?', text)
        if not m:
            raise PveError(400, 'Parameter verification failed.', {'size': 'value does not match the regex pattern'})
        if key not in vm.config:
            raise PveError(500, 'disk \'{0}\' does not exist'.format(key))
        volume, props = split_drive(vm.config[key])
        sid, name = volume.split(':', 1)
        # resize_vm: growing a disk allocates space on its storage
        self.require(user, '/storage/' + sid, 'Datastore.AllocateSpace')
        vol = self.storages[sid]['volumes'][name]
        amount = int(float(m.group(2)) * {'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3, 'T': 1024 ** 4}.get(m.group(3) or '', 1))
        new = int(vol.get('size') or 0) + amount if m.group(1) else amount
        if new < int(vol.get('size') or 0):
            raise PveError(500, 'shrinking disks is not supported')

        async def body():
            vol['size'] = new
            props['size'] = format_size(new)
            vm.config[key] = join_drive(volume, props)
            if vol.get('file'):
                # the volume's bytes grow too (zeros at the end), as the block device or image file does on PVE
                subprocess.run(['qemu-img', 'resize', '-q', '-f', vol.get('format') or 'raw', vol['file'], str(new)], check=True, timeout=60)
        return await self.task(vm.node, 'resize', vm.vmid, user, body, vm=vm)

    async def _query_url_metadata(self, v, user):
        """pve-manager PVE/API2/Nodes.pm query_url_metadata: a HEAD through LWP, which follows redirects (HEAD is
        redirectable by default); anything but a 200 at the end dies with the status line; the file name comes from
        Content-Disposition, else from the URL as asked (not the redirect's)."""
        self._require_network(user, v['node'])
        verify = str(v.get('verify-certificates', 1)) not in ('0', 'false')
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.head(v['url'], ssl=None if verify else False, allow_redirects=True) as res:
                    if res.status != 200:
                        raise PveError(500, "invalid server response: '{0} {1}'".format(res.status, res.reason))
                    out = {}
                    disposition = res.headers.get('Content-Disposition') or ''
                    named = re.search(r'filename="([^"]*)"', disposition) or re.search(r'filename=([^;]*)', disposition)
                    plain = re.match(r'^[^?]+/([^?/]*)(?:\?.*)?$', v['url'])
                    filename = named.group(1) if named else (plain.group(1) if plain else None)
                    if filename:
                        out['filename'] = filename
                    if res.headers.get('Content-Length'):
                        out['size'] = int(res.headers['Content-Length'])
                    if res.headers.get('Content-Type'):
                        out['mimetype'] = res.headers['Content-Type'].split(';')[0]
                    return out
        except aiohttp.ClientError as e:
            raise PveError(500, "invalid server response: '500 {0}'".format(e)) from None

    # ------------------------------------------------------------------ import-from

    def _qm_check_drive(self, user, vmid, pool, key, value, default):
        volume, props = split_drive(value)
        source = props.get('import-from')
        if source:
            sid, name = source.split(':', 1)
            if name not in self.storages.get(sid, {}).get('volumes', {}):
                raise PveError(500, "volume '{0}' does not exist".format(source))
            return super()._qm_check_drive(user, vmid, pool, key, _without(value, 'import-from'), default)
        return super()._qm_check_drive(user, vmid, pool, key, value, default)

    def _qm_new_drive(self, vmid, key, value, default):
        volume, props = split_drive(value)
        source = props.get('import-from')
        if volume.endswith(':cloudinit'):
            # PVE names the cloud-init volume vm-<vmid>-cloudinit (clients such as bpg's provider find the drive by
            # that name); fakepve allocates it as a numbered disk.
            drive, made = super()._qm_new_drive(vmid, key, value, default)
            sid, name = made[0].split(':', 1)
            store = self.storages[sid]
            new = 'vm-{0}-cloudinit'.format(vmid) + ('.' + name.rsplit('.', 1)[1] if '.' in name else '')
            store['volumes'][new] = store['volumes'].pop(name)
            return drive.replace(made[0], '{0}:{1}'.format(sid, new), 1), ['{0}:{1}'.format(sid, new)]
        if not source:
            return super()._qm_new_drive(vmid, key, value, default)
        sid, name = source.split(':', 1)
        vol = self.storages.get(sid, {}).get('volumes', {}).get(name)
        if vol is None:
            raise PveError(500, "volume '{0}' does not exist".format(source))
        content, filename = name.split('/', 1)
        src = self.file_path(sid, content, filename)
        size = _virtual_size(src) or int(vol.get('size') or 0)
        gib = max(1, -(-size // (1024 ** 3)))
        target, props = split_drive(value)
        target = target.split(':', 1)[0] if ':' in target else default
        props = {k: val for k, val in props.items() if k not in ('import-from', 'size')}
        drive, made = super()._qm_new_drive(vmid, key, join_drive('{0}:{1}'.format(target, gib), props), default)
        # qemu-server's import: qemu-img convert of the source into the new volume (raw on a block storage).
        new_sid, new_name = made[0].split(':', 1)
        new_vol = self.storages[new_sid]['volumes'][new_name]
        fmt = new_vol.get('format') or 'raw'
        out = os.path.join(self.data_dir, new_sid, 'images', str(vmid), new_name.replace('/', '_') + '.' + fmt)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if os.path.exists(src):
            done = subprocess.run(['qemu-img', 'convert', '-q', '-O', fmt, src, out], capture_output=True, timeout=1800)
            if done.returncode != 0:
                raise TaskError('import failed: {0}'.format(done.stderr.decode(errors='replace').strip()))
            new_vol['file'] = out
            new_vol['size'] = size
        return drive, made

    # ------------------------------------------------------------------ linked clones keep their template

    def _qm_alloc(self, sid, vmid, fmt, size, linked_from=None):
        volid, fmt2 = super()._qm_alloc(sid, vmid, fmt, size, linked_from)
        if linked_from:
            self.storages[sid]['volumes'][volid.split(':', 1)[1]]['base'] = linked_from
        return volid, fmt2

    async def _qm_destroy(self, v, user):
        vm = self.find(v['node'], v['vmid'])
        if vm.template:
            for _key, value in sorted(vm.config.items()):
                if not re.fullmatch(r'(ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0', _key):
                    continue
                volid = str(value).split(',', 1)[0]
                if ':' not in volid:
                    continue
                base = volid.split(':', 1)[1].rsplit('/', 1)[-1]
                users = [n for s in self.storages.values() for n, vol in s.get('volumes', {}).items()
                         if str(vol.get('base', '')).endswith('/' + base) or n.startswith(base + '/')]
                if users:
                    message = "base volume '{0}' is still in use by linked cloned".format(volid)

                    async def refuse():
                        raise TaskError(message)
                    return await self.task(vm.node, 'qmdestroy', vm.vmid, user, refuse)
        return await super()._qm_destroy(v, user)


def pve_privileges():
    from fakepve import shapes
    return sorted(shapes.PRIVILEGES)


def _without(value, option):
    return ','.join(p for p in str(value).split(',') if not p.startswith(option + '='))


def _virtual_size(path):
    if not os.path.exists(path) or not shutil.which('qemu-img'):
        return None
    try:
        out = subprocess.run(['qemu-img', 'info', '--output=json', path], capture_output=True, check=True, timeout=60)
        return int(json.loads(out.stdout)['virtual-size'])
    except (subprocess.SubprocessError, ValueError, KeyError):
        return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--ready-file', required=True)
    ap.add_argument('--node', default='pve1', help="the cluster's one node (dvntm's is pvem1)")
    ap.add_argument('--zfs-storage', action='append', default=[], help='add a zfspool storage for disks (dvntm: local-zfs)')
    ap.add_argument('--data-dir')
    ap.add_argument('--cert-dir', help='where the self-signed certificate goes (default: beside the ready file)')
    ap.add_argument('--pve-version', choices=sorted(PVE_VERSIONS), default='9.0', help="the node's PVE release")
    ap.add_argument('--import-storage', action='append', default=[], help="a storage whose content includes import (pvesm set <id> --content …,import)")
    ap.add_argument('--task-seconds', type=float, default=0.0, help='seconds every task runs after its UPID is returned')
    ap.add_argument('--fail-task', action='append', default=[], help='TYPE:MESSAGE: the first task of TYPE fails after running, with MESSAGE')
    args = ap.parse_args()
    token = os.environ.get('FAKEPVE_TOKEN', '')
    if '!' not in token or '=' not in token:
        print('launch.py: set FAKEPVE_TOKEN to user@realm!tokenid=secret', file=sys.stderr)
        sys.exit(2)
    tokenid, secret = token.split('=', 1)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix='fakepve-data-')
    pve = LabPve(data_dir, host=args.host, port=args.port)
    pve.version, pve.import_supported = PVE_VERSIONS[args.pve_version]
    pve.release_version = args.pve_version
    if args.task_seconds:
        pve.time_scale = 1.0
        pve.task_seconds = args.task_seconds
    for spec in args.fail_task:
        ttype, _, message = spec.partition(':')
        pve.fail_tasks[ttype] = message or 'task failed'
    if args.node != 'pve1':
        pve.nodes = {args.node: pve.nodes.pop('pve1')}
    for name in args.zfs_storage:
        pve.storages[name] = {'type': 'zfspool', 'active': 1, 'content': 'images,rootdir', 'files': set(), 'pool': 'rpool/data', 'sparse': 1}
    for name in args.import_storage:
        if not pve.import_supported:
            print('launch.py: PVE {0} has no import content type'.format(args.pve_version), file=sys.stderr)
            sys.exit(2)
        pve.storages[name]['content'] += ',import'
    # The main token: root@pam's with privilege separation and every privilege on / unless FAKEPVE_TOKEN_GRANTS
    # narrows it; more users and tokens: FAKEPVE_IDENTITIES (the grants default to the user's own).
    grants = json.loads(os.environ.get('FAKEPVE_TOKEN_GRANTS') or 'null') or [['/', pve_privileges()]]
    pve.add_identity(tokenid, secret, grants)
    for extra in json.loads(os.environ.get('FAKEPVE_IDENTITIES') or os.environ.get('FAKEPVE_EXTRA_TOKENS') or '[]'):
        extra_id, extra_secret = extra['token'].split('=', 1)
        pve.add_identity(extra_id, extra_secret, extra.get('grants', []), extra.get('privsep', True), extra.get('userGrants'))
    cert_dir = args.cert_dir or os.path.dirname(os.path.abspath(args.ready_file))
    os.makedirs(cert_dir, exist_ok=True)
    certfile, keyfile, _ = make_cert(cert_dir, hosts=(args.host,))
    await pve.start(certfile, keyfile)
    tmp = args.ready_file + '.partial'
    with open(tmp, 'w') as f:
        json.dump({'url': pve.url, 'port': pve.port, 'pid': os.getpid(), 'cert': certfile, 'dataDir': data_dir}, f)
    os.replace(tmp, args.ready_file)
    print('fakepve (image-factory launcher) listening on {0}'.format(pve.url), flush=True)
    await asyncio.Event().wait()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
