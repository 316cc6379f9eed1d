// `npm run schema`: writes schemas/outputs.schema.json from lib/contract.ts (the zod schemas are the source; the
// file is what consumers outside TypeScript check against). test/unit/contract.test.ts fails while the file is stale.
import { writeFileAtomic } from "../lib/atomic";
import { outputsJsonSchemaText } from "../lib/contract";
import { OUTPUTS_SCHEMA_FILE } from "../lib/outputsContract";

writeFileAtomic(OUTPUTS_SCHEMA_FILE, outputsJsonSchemaText()).then(() => console.log(`wrote ${OUTPUTS_SCHEMA_FILE}`), (err: Error) => {
    console.error(`outputs-schema: ${err.message}`);
    process.exit(1);
});
