"""A Proxmox VE API on loopback for the tests and the rehearsal: fakepve (PyPI, AGPL-3.0-or-later, a test-only
service installed by scripts/setup.sh into the ignored .tools/fakepve venv, never vendored or shipped) with an API
token, TLS and the few behaviours of real Proxmox VE that fakepve does not model but our code depends on.

    launch.py --host 127.0.0.1 --port 0 --ready-file F [--data-dir D] [--node pve1] [--zfs-storage local-zfs]
    env FAKEPVE_TOKEN="root@pam!ci=<secret>" (read from the environment: a secret never goes into argv)
    env FAKEPVE_EXTRA_TOKENS='[{"token": "u@pve!t=<secret>", "grants": [["/vms", ["VM.Audit"]]]}]' (optional)

Writes {"url", "port", "pid", "cert"} to the ready file once it listens. Extensions, each following the Proxmox VE
API viewer (pve-docs/api-viewer) and the code behind it:
- download-url (POST /nodes/{node}/storage/{storage}/download-url) really GETs the URL, hashes what arrives and
  refuses the file when `checksum` + `checksum-algorithm` do not match, as PVE::Tools::download_file_from_url does
  ("checksum mismatch: got '…' != expect '…'"); the file is kept on disk with its real size, so a later import
  reads real bytes. fakepve only pretends a fixed-size file arrived.
- `import` content on the dir storage `local` (PVE 8.4+: disk images to import, extensions .qcow2/.raw/.vmdk).
- query-url-metadata (GET /nodes/{node}/query-url-metadata) answers from a real HEAD request: filename, size,
  mimetype, as PVE::API2::Nodes does.
- qemu create with `import-from=<volume>` on a disk: the source must exist (else "volume '…' does not exist"),
  and the new disk takes the image's virtual size (qemu-img info), as qemu-server's import does.
- qemu resize (PUT /nodes/{node}/qemu/{vmid}/resize): fakepve answers it from the schema without changing the
  disk; here it grows the volume as qemu-server does and refuses to shrink.
- destroying a template whose base volume a linked clone uses fails in its task with
  "base volume '…' is still in use by linked cloned" (qemu-server destroy_vm, volume_is_base_and_used).
- the cloud-init drive's volume is vm-<vmid>-cloudinit, as PVE names it (fakepve numbers it like a disk).
- GET /_fake/downloads and /_fake/requests (not part of PVE): what download-url fetched (url, bytes, sha256,
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


class LabPve(FakePve):
    def __init__(self, data_dir, **kw):
        super().__init__(**kw)
        self.data_dir = data_dir
        self.downloads = []
        self.storages['local']['content'] = 'iso,vztmpl,backup,import,snippets'

    def file_path(self, storage, content, name):
        return os.path.join(self.data_dir, storage, content, name)

    # ------------------------------------------------------------------ download-url, really downloading

    async def _download_url(self, request):
        name, store = self._file_storage(request, 'download')
        user = request[USER]
        self.require(user, '/storage/' + name, 'Datastore.AllocateTemplate')
        self.require(user, '/', 'Sys.Audit')
        self.require(user, '/', 'Sys.Modify')
        p = self._verify(request, await params(request))
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

    async def _fake_requests(self, request):
        return web.json_response({'data': [list(r[:2]) + [r[2].decode(errors='replace') if isinstance(r[2], bytes) else r[2]] for r in self.requests]})

    def _build_app(self):
        app = super()._build_app()
        # Not PVE: a test hook outside /api2 (the middleware still asks for the token).
        app.router.add_get('/_fake/downloads', self._fake_downloads)
        app.router.add_get('/_fake/requests', self._fake_requests)
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
        vol = self.storages[sid]['volumes'][name]
        amount = int(float(m.group(2)) * {'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3, 'T': 1024 ** 4}.get(m.group(3) or '', 1))
        new = int(vol.get('size') or 0) + amount if m.group(1) else amount
        if new < int(vol.get('size') or 0):
            raise PveError(500, 'shrinking disks is not supported')

        async def body():
            vol['size'] = new
            props['size'] = format_size(new)
            vm.config[key] = join_drive(volume, props)
        return await self.task(vm.node, 'resize', vm.vmid, user, body, vm=vm)

    async def _query_url_metadata(self, v, user):
        self.require(user, '/', 'Sys.Audit')
        self.require(user, '/', 'Sys.Modify')
        verify = str(v.get('verify-certificates', 1)) not in ('0', 'false')
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.head(v['url'], ssl=None if verify else False, allow_redirects=True) as res:
                    if res.status != 200:
                        raise PveError(500, "can't get metadata of '{0}': {1} {2}".format(v['url'], res.status, res.reason))
                    out = {'filename': v['url'].rstrip('/').rsplit('/', 1)[-1].split('?', 1)[0]}
                    if res.headers.get('Content-Length') is not None:
                        out['size'] = int(res.headers['Content-Length'])
                    if res.headers.get('Content-Type'):
                        out['mimetype'] = res.headers['Content-Type'].split(';')[0]
                    return out
        except aiohttp.ClientError as e:
            raise PveError(500, "can't get metadata of '{0}': {1}".format(v['url'], e)) from None

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
        size = _virtual_size(self.file_path(sid, content, filename)) or int(vol.get('size') or 0)
        gib = max(1, -(-size // (1024 ** 3)))
        target, props = split_drive(value)
        target = target.split(':', 1)[0] if ':' in target else default
        props = {k: val for k, val in props.items() if k not in ('import-from', 'size')}
        return super()._qm_new_drive(vmid, key, join_drive('{0}:{1}'.format(target, gib), props), default)

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
    args = ap.parse_args()
    token = os.environ.get('FAKEPVE_TOKEN', '')
    if '!' not in token or '=' not in token:
        print('launch.py: set FAKEPVE_TOKEN to user@realm!tokenid=secret', file=sys.stderr)
        sys.exit(2)
    tokenid, secret = token.split('=', 1)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix='fakepve-data-')
    pve = LabPve(data_dir, host=args.host, port=args.port)
    pve.apitokens[tokenid] = secret
    if args.node != 'pve1':
        pve.nodes = {args.node: pve.nodes.pop('pve1')}
    for name in args.zfs_storage:
        pve.storages[name] = {'type': 'zfspool', 'active': 1, 'content': 'images,rootdir', 'files': set(), 'pool': 'rpool/data', 'sparse': 1}
    # More tokens with only some privileges, for permission tests: [{"token": "u@pve!t=s", "grants": [[path, [priv…]]]}]
    for extra in json.loads(os.environ.get('FAKEPVE_EXTRA_TOKENS') or '[]'):
        extra_id, extra_secret = extra['token'].split('=', 1)
        pve.apitokens[extra_id] = extra_secret
        for path, privs in extra.get('grants', []):
            pve.grant(extra_id, path, *privs)
    if pve.acl is not None:
        pve.grant(tokenid, '/', *pve_privileges())
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
